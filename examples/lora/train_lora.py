#!/usr/bin/env python3
"""LoRA fine-tune of a causal LM with the Hugging Face Trainer and peft, the way our users run
it: r=32, alpha=64 on q_proj/k_proj/v_proj/o_proj, Trainer logging to stdout, tqdm to stderr.

    # a real model, from a local path (weights on the NVMe) or a hub name
    python train_lora.py --model /mnt/disks/nvme/models/Meta-Llama-3.1-8B --data train.txt
    # a tiny Llama built from a config: no download, trains in seconds on a CPU or any GPU
    python train_lora.py --tiny --max_steps 60

--data is a text file with one training example per line; without it a small synthetic set
is used. Checkpoints and the adapter go to --output_dir (put it on the NVMe:
/mnt/disks/nvme/...). Run it on a gpuctl VM with `gpuctl run VM job.yaml`, watch it with
`gpuctl jobs` and `gpuctl plot RUN`.

Preemption: when gpuctl gives the run a checkpoint folder that outlives the machine
($GPUCTL_CHECKPOINT_DIR, from the job spec's `checkpoints: gs://...`), checkpoints go there and
a restarted run resumes from the newest complete one. On SIGTERM (a spot VM's 30 s notice, a
pod being evicted) it saves a checkpoint at the end of the current step and stops.
"""

from __future__ import annotations

import argparse
import math
import os
import random

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="local path or Hugging Face hub name of the base model")
    src.add_argument("--tiny", action="store_true", help="a tiny Llama from a config (no download)")
    p.add_argument("--data", help="text file, one example per line (default: synthetic)")
    p.add_argument("--output_dir", default="out/lora")
    p.add_argument("--checkpoint_dir", default=os.environ.get("GPUCTL_CHECKPOINT_DIR"),
                   help="where checkpoints go and a restart resumes from "
                        "(default $GPUCTL_CHECKPOINT_DIR, else --output_dir)")
    p.add_argument("--max_steps", type=int, default=-1)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--batch_size", type=int, default=4)
    p.add_argument("--grad_accum", type=int, default=4)
    p.add_argument("--seq_len", type=int, default=256)
    p.add_argument("--eval_fraction", type=float, default=0.05)
    p.add_argument("--logging_steps", type=int, default=10)
    p.add_argument("--eval_steps", type=int, default=50)
    p.add_argument("--save_steps", type=int, default=200)
    p.add_argument("--r", type=int, default=32)
    p.add_argument("--alpha", type=int, default=64)
    p.add_argument("--dropout", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=42)
    return p.parse_args(argv)


class ByteTokenizer:
    """UTF-8 bytes as tokens (ids 3..258), for the tiny model: nothing to download."""

    pad_token_id, bos_token_id, eos_token_id = 0, 1, 2
    vocab_size = 259

    def encode(self, text: str) -> list[int]:
        return [self.bos_token_id] + [b + 3 for b in text.encode("utf-8")] + [self.eos_token_id]


class HubTokenizer:
    def __init__(self, name: str):
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(name)
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        self.pad_token_id = self.tok.pad_token_id

    def encode(self, text: str) -> list[int]:
        ids = self.tok(text)["input_ids"]
        return ids + ([self.tok.eos_token_id] if ids and ids[-1] != self.tok.eos_token_id else [])


def synthetic_texts(n: int, seed: int) -> list[str]:
    """Short, learnable sentences: the loss falls visibly within a few dozen steps."""
    rng = random.Random(seed)
    subjects = ["the model", "a spot VM", "the NVMe disk", "our GPU", "the trainer", "LoRA"]
    verbs = ["learns", "stores", "computes", "saves", "loads", "scales"]
    objects = ["weights", "checkpoints", "gradients", "tokens", "adapters", "batches"]
    return [f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} "
            f"{i % 7} times {i % 5} is {(i % 7) * (i % 5)}." for i in range(n)]


def load_texts(path: str | None, seed: int) -> list[str]:
    if not path:
        return synthetic_texts(2000, seed)
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def tiny_llama(vocab_size: int, seq_len: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=128, intermediate_size=256,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=max(seq_len, 128), pad_token_id=0,
                         bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    return LlamaForCausalLM(config)


class TextDataset:
    def __init__(self, rows: list[list[int]]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.rows[i]}


def make_collator(pad_id: int):
    import torch

    def collate(batch: list[dict]) -> dict:
        width = max(len(item["input_ids"]) for item in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, item in enumerate(batch):
            seq = torch.tensor(item["input_ids"], dtype=torch.long)
            ids[row, :len(seq)] = seq
            mask[row, :len(seq)] = 1
        labels = ids.masked_fill(mask == 0, -100)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    return collate


def precision_flags() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {}
    return {"bf16": True} if torch.cuda.is_bf16_supported() else {"fp16": True}


def newest_checkpoint(folder: str | None) -> str | None:
    """The newest complete `checkpoint-<step>` folder the Trainer wrote, or None. A checkpoint
    cut short by a preemption has no trainer_state.json yet (the Trainer writes it after the
    weights and optimizer), so it is skipped rather than resumed from."""
    if not folder or not os.path.isdir(folder):
        return None
    steps = []
    for name in os.listdir(folder):
        prefix, _, step = name.partition("-")
        path = os.path.join(folder, name)
        if prefix == "checkpoint" and step.isdigit() and \
                os.path.isfile(os.path.join(path, "trainer_state.json")):
            steps.append((int(step), path))
    return max(steps)[1] if steps else None


def stop_on_sigterm_callback():
    """A Trainer callback: after SIGTERM, save a checkpoint at the end of this step and stop."""
    import signal

    from transformers import TrainerCallback

    class SaveAndStopOnSigterm(TrainerCallback):
        def __init__(self):
            self.asked = False
            signal.signal(signal.SIGTERM, self._ask)

        def _ask(self, _signum, _frame):
            self.asked = True
            print("SIGTERM: saving a checkpoint at the end of this step, then stopping", flush=True)

        def on_step_end(self, args, state, control, **kwargs):
            if self.asked:
                control.should_save = True
                control.should_training_stop = True
            return control

    return SaveAndStopOnSigterm()


def main(argv=None) -> None:
    args = parse_args(argv)
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments, set_seed

    set_seed(args.seed)
    tokenizer = ByteTokenizer() if args.tiny else HubTokenizer(args.model)
    texts = load_texts(args.data, args.seed)
    rows = [tokenizer.encode(t)[:args.seq_len] for t in texts]
    n_eval = max(1, int(len(rows) * args.eval_fraction))
    train_rows, eval_rows = rows[n_eval:], rows[:n_eval]

    if args.tiny:
        model = tiny_llama(ByteTokenizer.vocab_size, args.seq_len)
    else:
        from transformers import AutoModelForCausalLM

        dtype = torch.bfloat16 if precision_flags().get("bf16") else None
        model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=dtype)
    lora = LoraConfig(r=args.r, lora_alpha=args.alpha, lora_dropout=args.dropout,
                      target_modules=LORA_TARGETS, bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    model.print_trainable_parameters()

    per_epoch = math.ceil(len(train_rows) / (args.batch_size * args.grad_accum))
    total_steps = args.max_steps if args.max_steps > 0 else math.ceil(per_epoch * args.epochs)
    checkpoints = args.checkpoint_dir or args.output_dir
    resume = newest_checkpoint(checkpoints)
    if resume:
        print(f"resuming from {resume}", flush=True)
    training = TrainingArguments(
        output_dir=checkpoints, max_steps=args.max_steps, num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum, learning_rate=args.lr,
        lr_scheduler_type="cosine", warmup_steps=max(1, int(0.03 * total_steps)),
        logging_steps=args.logging_steps,
        eval_strategy="steps", eval_steps=args.eval_steps, save_strategy="steps",
        save_steps=args.save_steps, save_total_limit=2, report_to=[], seed=args.seed,
        dataloader_num_workers=0, **precision_flags())
    trainer = Trainer(model=model, args=training, train_dataset=TextDataset(train_rows),
                      eval_dataset=TextDataset(eval_rows),
                      data_collator=make_collator(tokenizer.pad_token_id),
                      callbacks=[stop_on_sigterm_callback()])
    result = trainer.train(resume_from_checkpoint=resume)
    if trainer.control.should_training_stop and trainer.state.global_step < trainer.state.max_steps:
        print(f"stopped at step {trainer.state.global_step} after SIGTERM; checkpoint saved "
              f"in {os.path.abspath(checkpoints)}", flush=True)
        raise SystemExit(143)  # 128 + SIGTERM: the run did not finish
    metrics = trainer.evaluate()
    trainer.save_model(args.output_dir)
    loss = metrics.get("eval_loss", float("nan"))
    print(f"final eval_loss {loss:.4f} (perplexity {math.exp(min(loss, 50)):.2f}); "
          f"train_loss {result.training_loss:.4f}; adapter saved to {os.path.abspath(args.output_dir)}")


if __name__ == "__main__":
    main()
