"""A tiny Llama with random weights and a word-level tokenizer, built locally: nothing downloaded.

The point is to run the real vLLM server on a real GPU through the agent without fetching a
model: two layers, head size 64 (a size every vLLM attention backend supports), bfloat16, a
few hundred tokens of vocabulary and a chat template so ``/v1/chat/completions`` works. Its
output is noise; tests and the benchmark ask for ``ignore_eos`` so lengths are what they ask.
"""

from __future__ import annotations

from pathlib import Path

# Words the tokenizer knows (anything else is <unk>); enough for prompts and varied output.
WORDS = (
    "hello world the a an of to and in is it you that he was for on are as with his they at be this have from "
    "or one had by word but not what all were we when your can said there use each which she do how their if "
    "will up other about out many then them these so some her would make like him into time has look two more "
    "write go see number no way could people my than first water been call who oil its now find long down day "
    "did get come made may part user assistant system say hi please answer question briefly benchmark token :"
).split()
SPECIAL = ("<unk>", "<s>", "</s>", "<pad>")
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ message['role'] }} : {{ message['content'] }} "
    "{% endfor %}{% if add_generation_prompt %}assistant :{% endif %}"
)


def build_tokenizer(directory: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL)}
    for word in dict.fromkeys(WORDS):
        vocab.setdefault("\u2581" + word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # SentencePiece-style: a word carries its leading space as "▁", so decoding restores spaces.
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>",
                                        eos_token="</s>", pad_token="<pad>")
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(str(directory))
    return tokenizer


def build_tiny_llama(directory: Path, *, seed: int = 0, max_position_embeddings: int = 512) -> Path:
    """Write config, random bfloat16 weights and the tokenizer to ``directory``; returns it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(directory)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=64,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    # save_pretrained records the parameters' dtype in config.json, which vLLM's --dtype auto reads.
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(str(directory), safe_serialization=True)
    return directory
