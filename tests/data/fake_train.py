"""A stand-in for a Hugging Face Trainer run with DeepSpeed, for the throwaway-host tests.

Pure Python (the hosts have no torch): it prints what a real run prints, in the same shape and
on the same streams: the Trainer preamble and log dicts on stdout, tqdm's bar rewritten with
\\r on stderr, DeepSpeed overflow lines, an evaluation, the final train_runtime dict. It writes
a checkpoint into --output_dir, exits with --exit-code, and on SIGTERM saves and exits 143
(or ignores SIGTERM with --ignore-sigterm, like a stuck NCCL collective).
"""

import argparse
import os
import signal
import sys
import time


def bar(n, total, spi):
    pct = int(100 * n / total)
    filled = "#" * int(10 * n / total)
    el, rem = int(n * spi), int((total - n) * spi)
    return (f"\r{pct:3d}%|{filled:<10}| {n}/{total} [{el // 60:02d}:{el % 60:02d}<"
            f"{rem // 60:02d}:{rem % 60:02d}, {spi:.2f}s/it]")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--sleep", type=float, default=0.05)
    parser.add_argument("--exit-code", type=int, default=0)
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--output_dir", default="out")
    parser.add_argument("--print-env", action="append", default=[])
    args = parser.parse_args()

    def on_term(signum, frame):
        print("received SIGTERM: saving a checkpoint and exiting", flush=True)
        sys.exit(143)

    signal.signal(signal.SIGTERM, signal.SIG_IGN if args.ignore_sigterm else on_term)
    for name in args.print_env:
        value = os.environ.get(name)
        print(f"env {name}: {'set, ' + str(len(value)) + ' chars' if value else 'unset'}")
    total = args.steps
    print("***** Running training *****\n  Num examples = 1,000\n  Num Epochs = 1\n"
          f"  Total optimization steps = {total:,}", flush=True)
    err = sys.stderr
    err.write(f"  0%|          | 0/{total} [00:00<?, ?it/s]")
    err.flush()
    loss, scale = 8.6182, 65536
    for n in range(1, total + 1):
        time.sleep(args.sleep)
        if n == 2:
            print(f"[INFO] [stage_1_and_2.py:1762:step] [deepspeed] OVERFLOW! Rank 0 Skipping "
                  f"step. Attempted loss scale: {scale}, reducing to {scale / 2}", flush=True)
        err.write(bar(n, total, 14.04))
        err.flush()
        if n % 5 == 0:
            loss *= 0.8
            print({"loss": round(loss, 4), "learning_rate": 2e-4, "epoch": round(n / total, 2)},
                  flush=True)
        if n == total // 2:
            print("***** Running Evaluation *****", flush=True)
            print({"eval_loss": 0.7646484375, "eval_runtime": 0.1, "epoch": 0.5}, flush=True)
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "adapter_model.bin"), "wb") as f:
        f.write(b"\0" * 1024)
    with open(os.path.join(args.output_dir, "trainer_state.json"), "w") as f:
        f.write('{"global_step": %d}\n' % total)
    err.write("\n")
    print({"train_runtime": total * args.sleep, "train_loss": round(loss, 4), "epoch": 1.0},
          flush=True)
    sys.exit(args.exit_code)


if __name__ == "__main__":
    main()
