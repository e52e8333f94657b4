"""Loads a Tributary DDPM U-Net checkpoint into a plain PyTorch module laid out as diffusers'
UNet2DModel (same parameter names and shapes; attention blocks with DDPM's AttnBlock names
norm/q/k/v/proj_out) with load_state_dict(strict=True), computes the denoising loss on the
clean images, timesteps and noise in BATCH_JSON, back-propagates, and prints
{"loss": L, "gradients": {name: [values, flattened row-major]}} so a test can compare both
with Tributary's.

Written from the architecture, not from Tributary's code paths: torch's Conv2d, GroupNorm,
Linear, F.silu, F.interpolate(mode="nearest"), F.avg_pool2d and attention written out.
The arithmetic runs in float64 by default (the fp32 weights and inputs widened), so the
comparison measures Tributary's fp32 error alone; --float32 keeps PyTorch in fp32.

usage: python unet_reference.py CHECKPOINT_STEP_DIR BATCH_JSON [--float32]
"""
import json, math, sys
import torch, torch.nn as nn, torch.nn.functional as F


def alpha_bars(kind, steps, beta_start=1e-4, beta_end=0.02):
    """ᾱ_t = Π_{s≤t}(1 − β_s) for DDPM's linear betas or Nichol & Dhariwal's cosine ones."""
    if kind == "linear":
        step = (beta_end - beta_start) / (steps - 1) if steps > 1 else 0.0
        betas = [beta_start + step * t for t in range(steps)]
    elif kind == "cosine":
        def f(t):
            return math.cos((t / steps + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = [min(1 - f(t + 1) / f(t), 0.999) for t in range(steps)]
    else:
        raise ValueError(f"unknown schedule {kind}")
    out, product = [], 1.0
    for beta in betas:
        product *= 1 - beta
        out.append(product)
    return out


def timestep_sinusoid(t, dim, max_period=10000.0):
    """UNet2DModel's embedding (flip_sin_to_cos=True, freq_shift=0): [cos(t·f), sin(t·f)],
    f_i = max_period^(−i/half), computed in float64 (t·f reaches 1000 radians)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float64) / half)
    angles = t.to(torch.float64)[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb


class ResnetBlock(nn.Module):
    def __init__(self, cin, cout, temb, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-5)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return skip + h


class AttnBlock(nn.Module):
    """Single-head, non-causal self-attention over the pixels, with a residual."""
    def __init__(self, c, groups):
        super().__init__()
        self.norm = nn.GroupNorm(groups, c, eps=1e-5)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x):
        b, c, hh, ww = x.shape
        h = self.norm(x)
        q = self.q(h).reshape(b, c, hh * ww).permute(0, 2, 1)    # [b, N, c]
        k = self.k(h).reshape(b, c, hh * ww)                      # [b, c, N]
        v = self.v(h).reshape(b, c, hh * ww).permute(0, 2, 1)    # [b, N, c]
        weights = torch.softmax(torch.bmm(q, k) / math.sqrt(c), dim=2)  # query i, key j
        attended = torch.bmm(weights, v).permute(0, 2, 1).reshape(b, c, hh, ww)
        return x + self.proj_out(attended)


class Level(nn.Module):
    def __init__(self, resnets, attentions):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        if attentions:
            self.attentions = nn.ModuleList(attentions)

    def block(self, j, h, temb):
        h = self.resnets[j](h, temb)
        return self.attentions[j](h) if hasattr(self, "attentions") else h


class TimeEmbedding(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.linear_1 = nn.Linear(cin, cout)
        self.linear_2 = nn.Linear(cout, cout)

    def forward(self, emb):
        return self.linear_2(F.silu(self.linear_1(emb)))


class UNet(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = a
        mult, base, groups = a["channel_multipliers"], a["base_channels"], a["norm_groups"]
        size, blocks = a["image_size"], a["blocks_per_level"]
        chans = [base * m for m in mult]
        attends = [(size >> i) in a["attention_resolutions"] for i in range(len(mult))]
        c0, temb = chans[0], 4 * chans[0]
        self.c0 = c0
        self.time_embedding = TimeEmbedding(c0, temb)
        self.conv_in = nn.Conv2d(a["in_channels"], c0, 3, padding=1)
        skip_channels, prev = [c0], c0
        down = []
        for i, c in enumerate(chans):
            resnets = []
            for _ in range(blocks):
                resnets.append(ResnetBlock(prev, c, temb, groups))
                prev = c
                skip_channels.append(c)
            if i < len(chans) - 1:
                skip_channels.append(c)
            down.append(Level(resnets, [AttnBlock(c, groups) for _ in range(blocks)] if attends[i] else []))
        self.down_blocks = nn.ModuleList(down)
        self.mid_block = Level([ResnetBlock(prev, prev, temb, groups) for _ in range(2)],
                               [AttnBlock(prev, groups)] if attends[-1] else [])
        up = []
        for i in reversed(range(len(chans))):
            resnets = []
            for _ in range(blocks + 1):
                resnets.append(ResnetBlock(prev + skip_channels.pop(), chans[i], temb, groups))
                prev = chans[i]
            up.append(Level(resnets, [AttnBlock(chans[i], groups) for _ in range(blocks + 1)] if attends[i] else []))
        self.up_blocks = nn.ModuleList(up)
        self.conv_norm_out = nn.GroupNorm(groups, c0, eps=1e-5)
        self.conv_out = nn.Conv2d(c0, a["in_channels"], 3, padding=1)

    def forward(self, x, t):
        temb = self.time_embedding(timestep_sinusoid(t, self.c0).to(x.dtype))
        h = self.conv_in(x)
        skips = [h]
        levels = len(self.down_blocks)
        for i, level in enumerate(self.down_blocks):
            for j in range(len(level.resnets)):
                h = level.block(j, h, temb)
                skips.append(h)
            if i < levels - 1:
                h = F.avg_pool2d(h, 2)
                skips.append(h)
        h = self.mid_block.resnets[0](h, temb)
        if hasattr(self.mid_block, "attentions"):
            h = self.mid_block.attentions[0](h)
        h = self.mid_block.resnets[1](h, temb)
        for k, level in enumerate(self.up_blocks):
            for j in range(len(level.resnets)):
                h = level.block(j, torch.cat([h, skips.pop()], dim=1), temb)
            if k < levels - 1:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
        assert not skips
        return self.conv_out(F.silu(self.conv_norm_out(h)))


def main():
    from safetensors.torch import load_file  # here, so the model imports without safetensors (Deploy/bench)
    step_dir, batch_path = sys.argv[1], sys.argv[2]
    dtype = torch.float32 if "--float32" in sys.argv[3:] else torch.float64
    cfg = json.load(open(f"{step_dir}/config.json"))
    assert cfg["model_type"] == "unet", cfg["model_type"]
    args = cfg["model_args"]
    model = UNet(args)
    model.load_state_dict(load_file(f"{step_dir}/model.safetensors"), strict=True)
    model.to(dtype)
    batch = json.load(open(batch_path))
    b, c, s = batch["batch"], args["in_channels"], args["image_size"]
    x0 = torch.tensor(batch["clean_images"], dtype=torch.float32).view(b, c, s, s).to(dtype)
    eps = torch.tensor(batch["noise"], dtype=torch.float32).view(b, c, s, s).to(dtype)
    t = torch.tensor(batch["timesteps"], dtype=torch.int64)
    abar = torch.tensor(alpha_bars(args["schedule"], args["timesteps"]), dtype=torch.float64)[t]
    xt = (abar.sqrt().to(dtype)[:, None, None, None] * x0 + (1 - abar).sqrt().to(dtype)[:, None, None, None] * eps)
    loss = ((model(xt, t) - eps) ** 2).mean()
    loss.backward()
    grads = {name: p.grad.detach().to(torch.float64).flatten().tolist() for name, p in model.named_parameters()}
    print(json.dumps({"loss": loss.item(), "gradients": grads}))


if __name__ == "__main__":
    main()
