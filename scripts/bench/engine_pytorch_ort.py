"""PyTorch and ONNX Runtime side of the flare U-Net benchmark (crates/flare-model engine_bench).

Builds the identical network from the model card in a flare safetensors file, loads its weights,
times (same thread count for both, best of --reps after a warm-up):
- PyTorch CPU forward (float32, no_grad),
- PyTorch training step: forward, CE + soft Dice (foreground classes), backward, SGD step
  (momentum 0.99, Nesterov), the same step flare times,
- ONNX Runtime forward of the network exported to ONNX (opset 17, legacy exporter),
- with --bf16 (issue 11), PyTorch's forward and training step again under
  torch.autocast("cpu", dtype=torch.bfloat16) from the same weights: bf16 convolutions with
  fp32 master weights, autocast's own fp32 for norms, softmax and losses.
Prints a table and machine-readable lines:
  result: pytorch_forward=<s> pytorch_train_step=<s> onnxruntime_forward=<s>
  result_bf16: pytorch_forward=<s> pytorch_train_step=<s>        (with --bf16)

Run: python3 scripts/bench/engine_pytorch_ort.py --model M.safetensors [--size 128 --threads 2]
"""

import argparse
import os
import sys
import time
import warnings

import torch
import torch.nn.functional as F

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
sys.path.insert(0, ROOT)
from model_unet import UNet, load_card  # noqa: E402


def best_of(reps, f):
    f()
    best = float("inf")
    for _ in range(max(reps, 1)):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def loss_of(logits, labels):
    ce = F.cross_entropy(logits, labels)
    p = torch.softmax(logits, dim=1)
    g = F.one_hot(labels, logits.shape[1]).permute(0, 4, 1, 2, 3).to(p.dtype)
    dims = (0, 2, 3, 4)
    dice = (2 * (p * g).sum(dims) + 1e-5) / (p.sum(dims) + g.sum(dims) + 1e-5)
    return ce + 1 - dice[1:].mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--train-reps", type=int, default=2)
    ap.add_argument("--onnx", default="/tmp/flare_engine_bench.onnx")
    ap.add_argument("--bf16", action="store_true")
    a = ap.parse_args()

    # The legacy exporter's deprecation and instance-norm notes are expected here.
    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    from safetensors.torch import load_file
    card = load_card(a.model)
    net = UNet(card["architecture"])
    net.load_state_dict(load_file(a.model))
    s = a.size
    x = torch.rand(1, 1, s, s, s)

    net.eval()
    with torch.no_grad():
        fwd = best_of(a.reps, lambda: net(x))
    print(f"pytorch {torch.__version__} forward: {fwd:.3f} s")

    z, y, w = torch.meshgrid(*(torch.arange(s),) * 3, indexing="ij")
    labels = ((z * 5 // s + y * 3 // s + w * 2 // s) % 5)[None].long()
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.99, nesterov=True,
                          weight_decay=3e-5)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_of(net(x), labels)
        loss.backward()
        opt.step()

    train = best_of(a.train_reps, step)
    print(f"pytorch train step (forward + loss + backward + SGD): {train:.3f} s")
    import resource
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"pytorch peak RSS so far (ru_maxrss, training dominates): {rss:.0f} MiB")

    ort_t = float("nan")
    try:
        import onnxruntime as ort
        net.load_state_dict(load_file(a.model))
        net.eval()
        torch.onnx.export(net, (x,), a.onnx, opset_version=17, input_names=["x"],
                          output_names=["logits"], dynamo=False)
        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        sess = ort.InferenceSession(a.onnx, so, providers=["CPUExecutionProvider"])
        xn = x.numpy()
        ort_t = best_of(a.reps, lambda: sess.run(None, {"x": xn}))
        # Same network, same weights: the outputs must agree, or the timing compares nothing.
        with torch.no_grad():
            ref = net(x).numpy()
        got = sess.run(None, {"x": xn})[0]
        err = float(abs(got - ref).max() / abs(ref).max())
        print(f"onnxruntime {ort.__version__} forward: {ort_t:.3f} s (max rel diff to PyTorch "
              f"{err:.1e})")
    except ImportError as e:
        print(f"onnxruntime not available: {e}")
    print(f"result: pytorch_forward={fwd:.4f} pytorch_train_step={train:.4f} "
          f"onnxruntime_forward={ort_t:.4f}")

    if a.bf16:
        net.load_state_dict(load_file(a.model))
        net.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            fwd16 = best_of(a.reps, lambda: net(x))
        print(f"pytorch bf16 autocast forward: {fwd16:.3f} s")
        net.train()
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.99, nesterov=True,
                              weight_decay=3e-5)

        def step16():
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = net(x)
            loss = loss_of(logits.float(), labels)
            loss.backward()
            opt.step()

        train16 = best_of(a.train_reps, step16)
        print(f"pytorch bf16 autocast train step: {train16:.3f} s")
        print(f"result_bf16: pytorch_forward={fwd16:.4f} pytorch_train_step={train16:.4f}")


if __name__ == "__main__":
    main()
