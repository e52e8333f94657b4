"""Loads a Tributary GPT checkpoint into a PyTorch module laid out as nanoGPT's `GPT`
(same parameter names and shapes) with load_state_dict(strict=True), and prints the mean
cross-entropy on the batch in BATCH_JSON, so a test can compare it with Tributary's.

usage: python nanogpt_reference.py CHECKPOINT_STEP_DIR BATCH_JSON
"""
import json, math, sys
import torch, torch.nn as nn, torch.nn.functional as F
from safetensors.torch import load_file


class SelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.n_head, self.n_embd = c["n_head"], c["n_embd"]
        self.c_attn = nn.Linear(c["n_embd"], 3 * c["n_embd"], bias=c["bias"])
        self.c_proj = nn.Linear(c["n_embd"], c["n_embd"], bias=c["bias"])

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=2)
        heads = lambda z: z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, d))


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_fc = nn.Linear(c["n_embd"], 4 * c["n_embd"], bias=c["bias"])
        self.c_proj = nn.Linear(4 * c["n_embd"], c["n_embd"], bias=c["bias"])

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c["n_embd"], bias=c["bias"])
        self.attn = SelfAttention(c)
        self.ln_2 = nn.LayerNorm(c["n_embd"], bias=c["bias"])
        self.mlp = MLP(c)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(c["vocab_size"], c["n_embd"]),
            wpe=nn.Embedding(c["block_size"], c["n_embd"]),
            h=nn.ModuleList([Block(c) for _ in range(c["n_layer"])]),
            ln_f=nn.LayerNorm(c["n_embd"], bias=c["bias"])))
        self.lm_head = nn.Linear(c["n_embd"], c["vocab_size"], bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # tied, as nanoGPT

    def forward(self, idx):
        t = idx.shape[1]
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(t))
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


def main():
    step_dir, batch_path = sys.argv[1], sys.argv[2]
    cfg = json.load(open(f"{step_dir}/config.json"))
    assert cfg["model_type"] == "gpt"
    model = GPT(cfg["model_args"])
    model.load_state_dict(load_file(f"{step_dir}/model.safetensors"), strict=True)
    batch = json.load(open(batch_path))
    b, t = batch["batch"], batch["sequence"]
    x = torch.tensor(batch["inputs"]).view(b, t)
    y = torch.tensor(batch["targets"]).view(b, t)
    with torch.no_grad():
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
    print(json.dumps({"loss": float(loss)}))


if __name__ == "__main__":
    main()
