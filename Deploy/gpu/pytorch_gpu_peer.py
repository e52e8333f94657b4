"""The PyTorch side of Deploy/gpu/measure.sh: fp32 training steps of the same GPT shapes
as `tributary bench compute` (peers.md's gpt-tiny and gpt-small, and gpt2-small: 12
layers x 12 heads x 768, context 1024, GPT-2's vocabulary) on CUDA (or the CPU when
there is no GPU), AdamW, a fresh random batch per step, timed with the device
synchronised. TF32 is off: both sides compute in fp32.
Prints one JSON line per configuration and attention (explicit, sdpa)."""
import argparse, json, math, statistics, time
import torch, torch.nn as nn, torch.nn.functional as F

CFG = {"gpt-tiny": dict(V=65, ctx=128, L=4, H=4, d=128, B=32),
       "gpt-small": dict(V=65, ctx=256, L=6, H=6, d=384, B=8),
       "gpt2-small": dict(V=50257, ctx=1024, L=12, H=12, d=768, B=4)}

class Block(nn.Module):
    def __init__(s, d, h, sdpa):
        super().__init__()
        s.h, s.sdpa = h, sdpa
        s.ln1, s.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        s.qkv, s.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        s.fc, s.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
    def attend(s, x):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, s.h, C // s.h).transpose(1, 2) for t in s.qkv(x).split(C, dim=2))
        if s.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) / math.sqrt(C // s.h)
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            y = F.softmax(att.masked_fill(~mask, float("-inf")), dim=-1) @ v
        return s.proj(y.transpose(1, 2).reshape(B, T, C))
    def forward(s, x):
        x = x + s.attend(s.ln1(x))
        return x + s.fc2(F.gelu(s.fc(s.ln2(x)), approximate="tanh"))

class GPT(nn.Module):
    def __init__(s, V, ctx, L, H, d, sdpa):
        super().__init__()
        s.wte, s.wpe = nn.Embedding(V, d), nn.Embedding(ctx, d)
        s.blocks = nn.ModuleList(Block(d, H, sdpa) for _ in range(L))
        s.ln_f = nn.LayerNorm(d)
    def forward(s, idx):
        x = s.wte(idx) + s.wpe(torch.arange(idx.shape[1], device=idx.device))
        for b in s.blocks: x = b(x)
        return s.ln_f(x) @ s.wte.weight.t()  # tied head

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="gpt-small,gpt2-small")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    a = ap.parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    print(f"# torch {torch.__version__} on {torch.cuda.get_device_name() if dev == 'cuda' else 'cpu'}", flush=True)
    for name in a.models.split(","):
        c = CFG[name]
        for sdpa in (False, True):
            torch.manual_seed(0)
            model = GPT(c["V"], c["ctx"], c["L"], c["H"], c["d"], sdpa).to(dev)
            opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01)
            batches = [torch.randint(0, c["V"], (c["B"], c["ctx"] + 1), device=dev) for _ in range(a.warmup + a.steps)]
            times = []
            for i, b in enumerate(batches):
                sync(); t0 = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                logits = model(b[:, :-1])
                F.cross_entropy(logits.reshape(-1, c["V"]), b[:, 1:].reshape(-1)).backward()
                opt.step()
                sync()
                if i >= a.warmup: times.append((time.perf_counter() - t0) * 1000)
            peak = torch.cuda.max_memory_allocated() if dev == "cuda" else 0
            print(json.dumps(dict(model=name, attn="sdpa" if sdpa else "explicit", device=dev,
                                  ms_med=statistics.median(times), ms_min=min(times), ms_max=max(times),
                                  peak_bytes=peak)), flush=True)
            del model, opt, batches
            if dev == "cuda": torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()

if __name__ == "__main__":
    main()
