"""Write a tiny llama-architecture GGUF model that llama.cpp loads: no download, no training.

The weights are random, so the model talks gibberish, which is all the browser test needs: an
OpenAI-compatible server that really runs a model and streams tokens. The vocabulary is a
SentencePiece-style one (`tokenizer.ggml.model = llama`): the three special tokens, the 256
byte-fallback tokens every input can be spelled with, then whole words. The output projection
gives only the words a non-zero logit, so what streams back is readable words (never raw
bytes or an early end of stream); the answer ends when the context is full.

Size: 512 wide, 4 layers, all F32: about 55 MB, written in a fraction of a second. Smaller
models work too, but they generate the whole answer in a few milliseconds and the page may get
it in one piece; at this size the ~230 tokens take about half a second on one CPU thread, so
the browser sees the answer grow, which is what shows it streamed.

Run with a Python that has `gguf` and `numpy` (the llama venv of the Web UI test env):
    python make_tiny_gguf.py OUT.gguf
"""

from __future__ import annotations

import sys

import numpy as np
from gguf import GGUFWriter, TokenType
from vocab import WORDS  # this directory is on sys.path when run as a script

N_EMBD, N_HEAD, N_LAYER, N_FF, N_CTX = 512, 8, 4, 1536, 2048

CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    tokens = ["<unk>", "<s>", "</s>"]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [TokenType.BYTE] * 256
    words = list(dict.fromkeys(WORDS))
    tokens += ["\u2581" + w for w in words]  # "▁word": the word with its leading space
    types += [TokenType.NORMAL] * len(words)
    # SentencePiece scores: higher merges first; byte and special tokens never win a merge.
    scores = [0.0] * (3 + 256) + [-float(i) for i in range(len(words))]
    return tokens, scores, [int(t) for t in types]


def write(path: str, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    tokens, scores, types = vocabulary()
    n_vocab = len(tokens)
    first_word = 3 + 256

    w = GGUFWriter(path, "llama")
    w.add_name("gpuctl-test-tiny")
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD)
    w.add_rope_dimension_count(N_EMBD // N_HEAD)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(0)  # all F32
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_chat_template(CHAT_TEMPLATE)

    def rand(*shape: int, scale: float = 0.05) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    w.add_tensor("token_embd.weight", rand(n_vocab, N_EMBD, scale=1.0))
    for i in range(N_LAYER):
        p = f"blk.{i}"
        w.add_tensor(f"{p}.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(f"{p}.{name}.weight", rand(N_EMBD, N_EMBD))
        w.add_tensor(f"{p}.ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        w.add_tensor(f"{p}.ffn_gate.weight", rand(N_FF, N_EMBD))
        w.add_tensor(f"{p}.ffn_up.weight", rand(N_FF, N_EMBD))
        w.add_tensor(f"{p}.ffn_down.weight", rand(N_EMBD, N_FF))
    w.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    # Logits: words ~ N(0, 4); special and byte tokens exactly 0, so they are (almost) never drawn.
    out = np.zeros((n_vocab, N_EMBD), dtype=np.float32)
    out[first_word:] = rand(n_vocab - first_word, N_EMBD, scale=0.5)
    w.add_tensor("output.weight", out)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_tiny_gguf.py OUT.gguf")
    write(sys.argv[1])
