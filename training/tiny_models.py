"""Tiny models of the real classes, built from configs with random weights, for tests and the CPU demo.

    python -m training.tiny_models --output_dir runs/demo/models

Writes `tiny-llama/` (LlamaForCausalLM + a byte-level BPE tokenizer trained offline on MusicCaps captions,
with a Llama-3-style chat template), `tiny-bert/` (BertModel, BERTScore's encoder), `tiny-musicgen/` (MusicgenForConditionalGeneration + processor) and
`tiny-clap/` (ClapModel + processor). The same loading code then runs on these and on the real checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from builder.common import DEFAULT_MUSICCAPS_CSV, get_logger, parse_args, run_dir

logger = get_logger(__name__)

SPECIAL_TOKENS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|pad|>"]
# Llama 3's template, without the blank line after each header, so that the prompt with the generation prompt
# is a token prefix of the prompt plus completion (TRL's completion mask depends on it).
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>"
    "{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>{% endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048):
    """A byte-level BPE tokenizer trained on `texts`, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                   pad_token="<|pad|>", unk_token=None)
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 512
    return fast


def musiccaps_texts(csv_path=DEFAULT_MUSICCAPS_CSV) -> list[str]:
    from builder.musiccaps import read_musiccaps
    from generation.prompting import INSTRUCTION, SYSTEM_PROMPT

    rows = read_musiccaps(csv_path)
    return [SYSTEM_PROMPT, INSTRUCTION] + [r.caption for r in rows] + [", ".join(r.aspect_list) for r in rows]


def build_tiny_llama(output_dir, texts: Sequence[str], hidden_size: int = 64, layers: int = 2, vocab_size: int = 2048,
                     seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    output_dir = Path(output_dir)
    tokenizer = train_tokenizer(texts, vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(output_dir)  # safetensors
    tokenizer.save_pretrained(output_dir)
    return output_dir


def build_tiny_bert(output_dir, tokenizer_dir, hidden_size: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A tiny BertModel sharing the tiny tokenizer: BERTScore's encoder in tests and the demo."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    output_dir = Path(output_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden_size, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir


MUSICGEN_ARCHITECTURES = Path(__file__).resolve().parent.parent / "configs" / "musicgen" / "architectures.yaml"


def musicgen_config(size: str = "small", tiny: bool = False):
    """MusicgenConfig of a published size ('small', 'medium', 'large') or a tiny one of the same shape."""
    import yaml
    from transformers import EncodecConfig, MusicgenConfig, MusicgenDecoderConfig, T5Config

    arch = yaml.safe_load(MUSICGEN_ARCHITECTURES.read_text())
    text, audio = dict(arch["text_encoder"]), dict(arch["audio_encoder"])
    decoder = {**arch["decoder"]["common"], **arch["decoder"][size]}
    if tiny:
        text.update(vocab_size=2048, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4)
        audio.update(num_filters=4, hidden_size=16, codebook_size=64, num_lstm_layers=1)
        decoder.update(vocab_size=64, pad_token_id=64, bos_token_id=64, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=4, ffn_dim=64)
    return MusicgenConfig(text_encoder=T5Config(**text).to_dict(), audio_encoder=EncodecConfig(**audio).to_dict(),
                          decoder=MusicgenDecoderConfig(**decoder).to_dict())


def build_tiny_musicgen(output_dir, texts: Sequence[str], seed: int = 0) -> Path:
    """A tiny MusicgenForConditionalGeneration (32 kHz, 50 frames/s, 4 codebooks) and its processor."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import EncodecFeatureExtractor, MusicgenForConditionalGeneration, MusicgenProcessor, T5TokenizerFast

    output_dir = Path(output_dir)
    tok = Tokenizer(models.Unigram())  # T5's tokenizer is a Unigram model
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=2000, special_tokens=["<pad>", "</s>", "<unk>"],
                                                           unk_token="<unk>"))
    tokenizer = T5TokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>", extra_ids=0)
    tokenizer.model_max_length = 512
    config = musicgen_config("small", tiny=True)
    config.text_encoder.vocab_size = len(tokenizer)
    torch.manual_seed(seed)
    model = MusicgenForConditionalGeneration(config)
    with torch.no_grad():  # an untrained EnCodec's codebooks are zeros, so every clip would decode to the same audio
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_()
            layer.codebook.embed_avg.copy_(layer.codebook.embed)
    model.generation_config.update(do_sample=True, guidance_scale=3.0, max_length=1500, top_k=50,
                                   decoder_start_token_id=config.decoder.pad_token_id, pad_token_id=config.decoder.pad_token_id)
    model.save_pretrained(output_dir)
    processor = MusicgenProcessor(EncodecFeatureExtractor(feature_size=1, sampling_rate=32000), tokenizer)
    processor.save_pretrained(output_dir)
    return output_dir


def build_tiny_clap(output_dir, texts: Sequence[str], seed: int = 0) -> Path:
    """A tiny ClapModel (HTSAT audio tower, RoBERTa text tower, 48 kHz, unfused) and its processor."""
    import torch
    from transformers import ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, ClapTextConfig

    output_dir = Path(output_dir)
    tokenizer = train_tokenizer(texts, vocab_size=1024)
    text = ClapTextConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=64, max_position_embeddings=520, pad_token_id=tokenizer.pad_token_id,
                          projection_dim=16)
    # the real spectrogram geometry (64 mel bins folded into a 256 x 256 image), a tiny Swin on top of it
    audio = ClapAudioConfig(spec_size=256, num_mel_bins=64, patch_embeds_hidden_size=16, hidden_size=32,
                            depths=[1, 1], num_attention_heads=[2, 2], window_size=8, patch_size=4, patch_stride=[4, 4],
                            enable_fusion=False, projection_dim=16)
    config = ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=16)
    torch.manual_seed(seed)
    ClapModel(config).save_pretrained(output_dir)
    extractor = ClapFeatureExtractor(feature_size=64, sampling_rate=48000, max_length_s=10, fft_window_size=1024,
                                     hop_length=480, truncation="rand_trunc", padding="repeatpad")
    ClapProcessor(extractor, tokenizer).save_pretrained(output_dir)
    return output_dir


@dataclass
class TinyModelArguments:
    """Build tiny random-weight models of the real classes for the CPU demo and tests."""

    output_dir: str | None = field(default=None, metadata={"help": "folder for the models (default: run dir/models)"})
    musiccaps_csv: str = field(default=str(DEFAULT_MUSICCAPS_CSV), metadata={"help": "tokenizer training text"})
    llm_hidden_size: int = field(default=64, metadata={"help": "tiny Llama width"})
    seed: int = field(default=0, metadata={"help": "weight initialisation seed"})


def main(argv: Sequence[str] | None = None) -> Path:
    args = parse_args(TinyModelArguments, "tiny_models", argv)
    out = Path(args.output_dir or run_dir() / "models")
    build_tiny_llama(out / "tiny-llama", musiccaps_texts(args.musiccaps_csv), args.llm_hidden_size, seed=args.seed)
    build_tiny_bert(out / "tiny-bert", out / "tiny-llama", seed=args.seed)
    texts = musiccaps_texts(args.musiccaps_csv)
    build_tiny_musicgen(out / "tiny-musicgen", texts, seed=args.seed)
    build_tiny_clap(out / "tiny-clap", texts, seed=args.seed)
    logger.info("tiny models written to %s", out)
    return out


if __name__ == "__main__":
    main()
