"""A tiny, randomly initialised Idefics3 (SmolVLM architecture) built from configs, for CPU tests and demos.

No real vision-language model small enough for a CPU box ships in a PyPI package, so the CPU default serves
this one as `tiny-random-vlm`: every layer of a real VLM runs (image processor, vision encoder, connector,
language model, chat template), but its weights are random and its words mean nothing. Same seed, same model.
It reuses the SmolLM2 tokenizer, as the real SmolVLM does.
"""

from __future__ import annotations

from pathlib import Path

VISION_IMAGE_SIZE = 64
PATCH_SIZE = 16
SCALE_FACTOR = 2
IMAGE_SEQ_LEN = (VISION_IMAGE_SIZE // PATCH_SIZE) ** 2 // SCALE_FACTOR**2

# SmolVLM's template, reduced: string or part-list content, `<image>` where each image part was.
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'] is string %}: {{ message['content'] }}"
    "{% else %}{% if message['content'][0]['type'] == 'image' %}:{% else %}: {% endif %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% elif part['type'] == 'image' %}<image>{% endif %}{% endfor %}{% endif %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)
IMAGE_TOKENS = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"] + [
    f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]


def build_tiny_idefics3(target: Path, tokenizer_path: str, seed: int = 0) -> None:
    """Write a loadable checkpoint (weights, config, processor, chat template) into `target`."""
    import torch
    from transformers import (
        AutoTokenizer,
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
    )

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    tokenizer.add_special_tokens({"additional_special_tokens": IMAGE_TOKENS})
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": VISION_IMAGE_SIZE}, max_image_size={"longest_edge": VISION_IMAGE_SIZE},
        do_image_splitting=False)
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer,
                                  image_seq_len=IMAGE_SEQ_LEN, chat_template=CHAT_TEMPLATE)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    config = Idefics3Config(
        # head sizes of 32: the smallest vLLM's CPU attention kernels support
        vision_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": VISION_IMAGE_SIZE, "patch_size": PATCH_SIZE},
        text_config={"model_type": "llama", "vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128,
                     "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
                     "max_position_embeddings": 2048, "tie_word_embeddings": False, "pad_token_id": pad,
                     "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id},
        scale_factor=SCALE_FACTOR, image_token_id=tokenizer.convert_tokens_to_ids("<image>"), pad_token_id=pad,
        tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config).eval()
    model.save_pretrained(target)
    processor.save_pretrained(target)
