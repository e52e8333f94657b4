"""pytorch_unet_peer.py: fp32 CPU training-step timing of Tributary's U-Net configurations in
PyTorch, the peer `tributary bench compute` runs for them (../shared/reference/pytorch_peer.py
knows only mlp and gpt). Same CLI and JSON lines as that script.

Usage: python pytorch_unet_peer.py --threads 2 --warmup 5 --steps 20 [--models unet-mnist] [--opts adamw,sgd]

The model is Tests/Interop/unet_reference.py's (the interop tests' independent PyTorch U-Net,
imported by path, not a copy). A step is the worker's: zero_grad, pixels in [0, 1] mapped to
[-1, 1], a random timestep and Gaussian noise per image, x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps,
loss = mean (eps_hat - eps)^2, backward, optimizer step; a distinct pre-generated pixel batch
per step (the noise is drawn inside the step, as Tributary draws it inside its step).
AdamW lr=3e-4 (betas 0.9/0.999, eps 1e-8, wd 0.01), SGD lr=1e-2 momentum 0.9, as ComputeBenchmark.
FLOPs/step: 6 x the multiply-adds of one forward pass (convolutions, linears, attention products)
per image x batch, counted with forward hooks, the formula of UNetConfig.multiplyAddsPerSample.
"""
import argparse, importlib.util, json, os, statistics, time
import torch, torch.nn as nn

_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(
    "unet_reference", os.path.join(_here, "..", "..", "Tests", "Interop", "unet_reference.py"))
unet_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(unet_reference)

# The U-Net of Deploy/jobs/mnist-unet.yaml, a unit of 32 images (its samples_per_unit).
CFG = {"unet-mnist": dict(args=dict(image_size=28, in_channels=1, base_channels=16, channel_multipliers=[1, 2, 2],
                                    blocks_per_level=1, norm_groups=8, timesteps=1000, schedule="linear",
                                    attention_resolutions=[]), B=32)}


def multiply_adds_per_image(model, args):
    """Multiply-adds of one image's forward pass: every Conv2d and Linear (hooks on their
    outputs) plus attention's two N x N x C products."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += output[0].numel() * module.in_channels * k
        elif isinstance(module, nn.Linear):
            total += output[0].numel() * module.in_features
        elif isinstance(module, unet_reference.AttnBlock):
            c, n = inputs[0].shape[1], inputs[0].shape[2] * inputs[0].shape[3]
            total += 2 * n * n * c

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear, unet_reference.AttnBlock))]
    s, c = args["image_size"], args["in_channels"]
    with torch.no_grad():
        model(torch.zeros(1, c, s, s), torch.zeros(1, dtype=torch.int64))
    for h in handles:
        h.remove()
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--models", default="unet-mnist")
    ap.add_argument("--opts", default="adamw,sgd")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"# torch {torch.__version__} threads={torch.get_num_threads()} cpu_capability={torch.backends.cpu.get_cpu_capability()} (U-Net peer)", flush=True)
    rows = []
    for name in a.models.split(","):
        if name not in CFG:
            raise SystemExit(f"unknown U-Net configuration '{name}' (known: {', '.join(CFG)})")
        args, B = CFG[name]["args"], CFG[name]["B"]
        s, c, T = args["image_size"], args["in_channels"], args["timesteps"]
        abar = torch.tensor(unet_reference.alpha_bars(args["schedule"], T), dtype=torch.float32)
        for optn in a.opts.split(","):
            torch.manual_seed(0)
            model = unet_reference.UNet(args)
            flops = 6 * multiply_adds_per_image(model, args) * B
            opt = (torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
                   if optn == "adamw" else torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9))
            pixels = [torch.rand(B, c, s, s) for _ in range(a.warmup + a.steps)]
            ts = []
            for i, x in enumerate(pixels):
                t0 = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                t = torch.randint(0, T, (B,))
                eps = torch.randn(B, c, s, s)
                ab = abar[t][:, None, None, None]
                xt = ab.sqrt() * (2 * x - 1) + (1 - ab).sqrt() * eps
                loss = ((model(xt, t) - eps) ** 2).mean()
                loss.backward()
                opt.step()
                dt = time.perf_counter() - t0
                if i >= a.warmup:
                    ts.append(dt)
            med = statistics.median(ts)
            r = dict(model=name, attn="explicit", opt=optn, threads=a.threads,
                     params=sum(p.numel() for p in model.parameters()), flops_per_step=flops,
                     ms_med=med * 1e3, ms_min=min(ts) * 1e3, ms_max=max(ts) * 1e3, n=len(ts),
                     throughput=B / med, unit="images/s", gflops=flops / med * 1e-9, loss=float(loss.detach()))
            rows.append(r)
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
