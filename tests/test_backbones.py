"""Any encoder as the backbone: BERT, DistilBERT, RoBERTa and GPT-Neo, each tiny and random with a tokenizer built
offline, through from_encoder, training, predict, a clean-process reload and the standard pipelines."""

import itertools
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    BertConfig,
    DistilBertConfig,
    GPT2TokenizerFast,
    GPTNeoConfig,
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaTokenizerFast,
)

from conftest import BLOCK_PACKAGE, SENTENCE_LABELS, TOKEN_LABELS
from modeling_mtl import MultiTaskConfig, MultiTaskModel, split_words
from modeling_mtl.configuration_mtl import encoder_max_positions, is_causal_encoder
from test_modeling import IRREGULAR_TEXTS, force_tags

FAMILIES = ["bert", "distilbert", "roberta", "gpt_neo"]
BYTE_LEVEL = {"roberta", "gpt_neo"}
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)

LONG_WORD = "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch"
TEXTS = ["fly from boston to new york", f"book a room in {LONG_WORD} next week"]
PREDICT_TEXTS = [f"Fly me to {LONG_WORD}, then São Paulo!", *IRREGULAR_TEXTS]


def corpus():
    """A few hundred sentences for the byte-level BPE vocabularies."""
    people = ["Anna", "Peter", "the pilot", "my sister", "our team"]
    verbs = ["flew from", "drove through", "wrote about", "moved to", "asked about"]
    places = ["Boston", "New York", "Paris", "the old town", "a small village", "London"]
    tails = ["yesterday.", "on Monday", "with a new laptop", "after the meeting!", "(again)"]
    return [" ".join(parts) for parts in itertools.product(people, verbs, places, tails)][::2]


def train_byte_level_bpe(special_tokens):
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=500, special_tokens=special_tokens, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(corpus(), trainer)
    return tokenizer


def roberta_tokenizer():
    backend = train_byte_level_bpe(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    backend.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return RobertaTokenizerFast(tokenizer_object=backend)


def gpt_neo_tokenizer():
    backend = train_byte_level_bpe(["<|endoftext|>"])
    backend.post_processor = processors.ByteLevel(trim_offsets=True)
    end = "<|endoftext|>"
    tokenizer = GPT2TokenizerFast(tokenizer_object=backend, unk_token=end, bos_token=end, eos_token=end)
    assert tokenizer.pad_token is None  # as GPT-2 / GPT-Neo ship
    return tokenizer


def tiny_encoder_config(family, tokenizer):
    vocab_size = len(tokenizer)
    if family == "bert":
        return BertConfig(vocab_size=vocab_size, max_position_embeddings=512, **TINY)
    if family == "distilbert":
        return DistilBertConfig(vocab_size=vocab_size, dim=32, n_layers=2, n_heads=2, hidden_dim=64)
    if family == "roberta":
        return RobertaConfig(
            vocab_size=vocab_size, max_position_embeddings=514, pad_token_id=1, bos_token_id=0, eos_token_id=2, **TINY
        )
    end = tokenizer.eos_token_id
    return GPTNeoConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        attention_types=[[["global", "local"], 1]],
        window_size=16,
        max_position_embeddings=512,
        bos_token_id=end,
        eos_token_id=end,
    )


@pytest.fixture(scope="module")
def encoder_folders(tmp_path_factory, minilm_path):
    """family -> a folder holding a tiny random encoder and its tokenizer, as an encoder on the Hub would."""
    wordpiece = AutoTokenizer.from_pretrained(minilm_path)
    tokenizers = dict(bert=wordpiece, distilbert=wordpiece, roberta=roberta_tokenizer(), gpt_neo=gpt_neo_tokenizer())
    folders = {}
    for family, tokenizer in tokenizers.items():
        folders[family] = tmp_path_factory.mktemp(f"encoder-{family}")
        torch.manual_seed(0)
        AutoModel.from_config(tiny_encoder_config(family, tokenizer)).save_pretrained(folders[family])
        tokenizer.save_pretrained(folders[family])
    return folders


def build(folder, **overrides):
    torch.manual_seed(0)
    return MultiTaskModel.from_encoder(folder, sentence_labels=SENTENCE_LABELS, token_labels=TOKEN_LABELS, **overrides)


def labelled_batch(tokenizer, words_batch):
    """Tokens of pre-split words, a tag on each word's first sub-token (-100 elsewhere) and a sentence label."""
    encoding = tokenizer(words_batch, is_split_into_words=True, padding=True, return_tensors="pt")
    token_labels = torch.full(encoding["input_ids"].shape, -100)
    for row in range(len(words_batch)):
        seen = set()
        for position, word in enumerate(encoding.word_ids(row)):
            if word is not None and word not in seen:
                seen.add(word)
                token_labels[row, position] = (row + word) % len(TOKEN_LABELS)
    sentence_labels = torch.arange(len(words_batch)) % len(SENTENCE_LABELS)
    return encoding, sentence_labels, token_labels


@pytest.mark.parametrize(
    "model_type, overrides, causal, positions",
    [
        ("bert", {}, False, 512),
        ("bert", {"is_decoder": True}, True, 512),
        ("distilbert", {}, False, 512),
        ("roberta", {"max_position_embeddings": 514}, False, 512),  # positions start after the padding index
        ("gpt2", {}, True, 1024),
        ("gpt_neox", {}, True, 2048),  # its config says is_decoder=False
        ("olmo", {}, True, 2048),  # not listed: causal-LM head, no masked-LM head
        ("bert-generation", {}, False, 512),
        ("xlnet", {}, True, None),  # relative positions: no limit
    ],
)
def test_encoder_families_are_recognised(model_type, overrides, causal, positions):
    config = AutoConfig.for_model(model_type, **overrides)
    assert (is_causal_encoder(config), encoder_max_positions(config)) == (causal, positions)


def test_roberta_positions_below_the_padding_index_do_not_count():
    roberta = RobertaConfig(max_position_embeddings=514, pad_token_id=1, **TINY)
    assert MultiTaskConfig(encoder_config=roberta, max_seq_length=512).max_seq_length == 512
    with pytest.raises(ValueError, match=r"max_position_embeddings \(514, less 2 reserved up to the padding index\)"):
        MultiTaskConfig(encoder_config=roberta, max_seq_length=513)


@pytest.mark.parametrize("family", FAMILIES)
def test_from_encoder_adapts_tokenizer_pooling_and_inputs(family, encoder_folders):
    model = build(encoder_folders[family])
    tokenizer, encoder_config = model.tokenizer, model.config.encoder_config
    assert model.config.encoder_config.model_type == family
    assert model.config.pooling_mode == ("last" if family == "gpt_neo" else "mean")
    assert build(encoder_folders[family], pooling_mode="mean").config.pooling_mode == "mean"
    # A pad token the encoder config agrees on; GPT-Neo reuses its end-of-text token, the vocabulary unchanged.
    assert tokenizer.pad_token is not None and encoder_config.pad_token_id == tokenizer.pad_token_id
    assert model.get_input_embeddings().num_embeddings == encoder_config.vocab_size == len(tokenizer)
    if family == "gpt_neo":
        assert tokenizer.pad_token == tokenizer.eos_token
    # Byte-level BPE: pre-split words tokenise as in running text (each with its leading-space piece).
    words = ["fly", "from", "boston", LONG_WORD]
    split = tokenizer(words, is_split_into_words=True)["input_ids"]
    assert split == tokenizer(" ".join(words))["input_ids"]
    if family in BYTE_LEVEL:
        assert tokenizer.add_prefix_space
        assert tokenizer.convert_ids_to_tokens(split)[1 if family == "roberta" else 0].startswith("Ġ")

    # token_type_ids reach encoders with segment embeddings only: DistilBERT has none, GPT-Neo would read them as
    # token ids.
    seen = {}
    model.encoder.register_forward_pre_hook(lambda module, args, kwargs: seen.update(kwargs), with_kwargs=True)
    inputs = tokenizer(TEXTS, padding=True, return_tensors="pt")
    inputs.setdefault("token_type_ids", torch.zeros_like(inputs["input_ids"]))
    model(**inputs)
    assert ("token_type_ids" in seen) == (family in ("bert", "roberta"))


@pytest.mark.parametrize("family", FAMILIES)
def test_inspect_data_counts_the_tokens_and_length_training_uses(family, encoder_folders):
    from modeling_mtl.inspect_data import _tokenizer_and_length
    from modeling_mtl.training_args import ModelArguments

    tokenizer, length = _tokenizer_and_length(ModelArguments(encoder=str(encoder_folders[family])))
    model = build(encoder_folders[family])
    words = ["fly", "from", "boston", LONG_WORD]
    assert tokenizer(words, is_split_into_words=True)["input_ids"] == model.tokenizer(words, is_split_into_words=True)[
        "input_ids"]
    assert length == model.config.max_seq_length


@pytest.mark.parametrize("family", FAMILIES)
def test_both_losses_fall_in_a_few_steps(family, encoder_folders):
    model = build(encoder_folders[family])
    words = [text.split() for text in TEXTS + ["the senate voted today", "buy a laptop in Paris"]]
    encoding, sentence_labels, token_labels = labelled_batch(model.tokenizer, words)
    inputs = dict(**encoding, sentence_labels=sentence_labels, token_labels=token_labels)
    with torch.no_grad():
        before = model(**inputs)
    assert before.sentence_logits.shape == (4, len(SENTENCE_LABELS))
    assert before.token_logits.shape == (*encoding["input_ids"].shape, len(TOKEN_LABELS))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(6):
        optimizer.zero_grad()
        model(**inputs).loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        after = model(**inputs)
    assert after.sentence_loss < before.sentence_loss and after.token_loss < before.token_loss


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("tag", ["B-LOC", "I-PER"])
def test_predict_spans_match_the_words_bpe_splits(family, tag, encoder_folders):
    model = build(encoder_folders[family])
    pieces = model.tokenizer([LONG_WORD], is_split_into_words=True).word_ids()
    assert pieces.count(0) >= 5  # the long word really is many sub-tokens
    force_tags(model, tag)
    texts = PREDICT_TEXTS + [["pre", "split", LONG_WORD]]
    for text, result in zip(PREDICT_TEXTS + [f"pre split {LONG_WORD}"], model.predict(texts, batch_size=3)):
        for entity in result["entities"]:
            assert text[entity["start"] : entity["end"]] == entity["word"]
        words = [word for word, _, _ in split_words(text)]
        if tag.startswith("B-"):  # every word its own entity
            assert [entity["word"] for entity in result["entities"]] == words
        else:  # one entity from the first word to the last
            assert [entity["word"] for entity in result["entities"]] == [text.strip()]


def test_a_passed_tokenizer_is_adapted_on_a_copy(encoder_folders):
    passed = gpt_neo_tokenizer()
    model = MultiTaskModel.from_encoder(encoder_folders["gpt_neo"], sentence_labels=["a", "b"], tokenizer=passed)
    assert passed.pad_token is None and not passed.backend_tokenizer.pre_tokenizer.add_prefix_space
    assert model.tokenizer.pad_token == passed.eos_token
    assert model.tokenizer.backend_tokenizer.pre_tokenizer.add_prefix_space


def test_a_tokenizer_with_no_special_token_gets_a_new_pad_token(tmp_path):
    # The generic class ignores `add_prefix_space` when loading, so the tokenizer itself must have been changed.
    bare = PreTrainedTokenizerFast(tokenizer_object=train_byte_level_bpe([]))
    AutoModel.from_config(tiny_encoder_config("gpt_neo", bare)).save_pretrained(tmp_path / "encoder")
    bare.save_pretrained(tmp_path / "encoder")
    model = build(tmp_path / "encoder")
    assert model.tokenizer.pad_token == "<pad>" and model.config.encoder_config.pad_token_id == len(bare)
    assert model.get_input_embeddings().num_embeddings == model.config.encoder_config.vocab_size == len(bare) + 1
    words = TEXTS[0].split()
    assert model.tokenizer(words, is_split_into_words=True)["input_ids"] == model.tokenizer(TEXTS[0])["input_ids"]
    model.save_pretrained(tmp_path / "model")
    loaded = MultiTaskModel.from_pretrained(tmp_path / "model")
    inputs = model.tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert torch.equal(loaded(**inputs).token_logits, model(**inputs).token_logits)
    assert loaded.tokenizer(words, is_split_into_words=True)["input_ids"] == model.tokenizer(TEXTS[0])["input_ids"]


def test_causal_encoder_ignores_the_padding_side_and_reads_empty_texts(encoder_folders):
    model = build(encoder_folders["gpt_neo"])
    texts = ["fly", "fly from boston to new york tomorrow", ""]
    right = model.encode(texts, batch_size=3, convert_to_tensor=True)
    model.tokenizer.padding_side = "left"
    left = model.encode(texts, batch_size=3, convert_to_tensor=True)
    assert torch.isfinite(right).all() and torch.allclose(left, right, atol=1e-5)
    alone = torch.stack([model.encode(text, convert_to_tensor=True) for text in texts])
    assert torch.allclose(alone, right, atol=1e-5)
    results = model.predict(["", "fly to Paris"]) + model.predict([""])
    assert [result["entities"] for result in (results[0], results[2])] == [[], []]


CLEAN_CLIENT = BLOCK_PACKAGE + textwrap.dedent(
    """
    import json
    from safetensors.torch import save_file
    from transformers import AutoModel, pipeline

    out, texts = sys.argv[1], json.loads(sys.argv[2])
    for family, folder in json.loads(sys.argv[3]).items():
        model = AutoModel.from_pretrained(folder, trust_remote_code=True)
        assert "transformers_modules" in type(model).__module__, type(model).__module__
        output = model(**model.tokenizer(texts, padding=True, return_tensors="pt"))
        save_file(
            {
                "sentence_logits": output.sentence_logits.contiguous(),
                "token_logits": output.token_logits.contiguous(),
                "sentence_embedding": output.sentence_embedding.contiguous(),
                "embeddings": model.encode(texts, convert_to_tensor=True),
            },
            f"{out}/{family}.safetensors",
        )
        text_pipe = pipeline("text-classification", model=folder, trust_remote_code=True)
        token_pipe = pipeline("token-classification", model=folder, trust_remote_code=True, ignore_labels=[])
        words = texts[0].split()
        result = {
            "split_ids": model.tokenizer(words, is_split_into_words=True)["input_ids"],
            "pad_token": model.tokenizer.pad_token,
            "pipeline_ids": token_pipe.tokenizer(texts[0])["input_ids"],
            "text": text_pipe(texts[0]),
            "tokens": [{k: (float(v) if k == "score" else v) for k, v in t.items()} for t in token_pipe(texts[0])],
            "predict": model.predict(texts),
        }
        with open(f"{out}/{family}.json", "w") as handle:
            json.dump(result, handle)
    """
)


@pytest.fixture(scope="module")
def clean_reload(encoder_folders, tmp_path_factory):
    """family -> (model, what a clean process loaded from its saved folder): one subprocess for every family."""
    root = tmp_path_factory.mktemp("saved")
    built, saved = {}, {}
    for family in FAMILIES:
        model = build(encoder_folders[family])
        with torch.no_grad():  # heads far from their tiny initial weights, so the comparisons mean something
            model.sentence_head.classifier.weight.normal_()
            model.token_head.classifier.weight.normal_()
        built[family], saved[family] = model, str(root / family)
        model.save_pretrained(saved[family])
    script = root / "client.py"
    script.write_text(CLEAN_CLIENT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-I", str(script), str(root), json.dumps(TEXTS), json.dumps(saved)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {
        family: (
            built[family],
            load_file(root / f"{family}.safetensors"),
            json.loads((root / f"{family}.json").read_text()),
        )
        for family in FAMILIES
    }


@pytest.mark.parametrize("family", FAMILIES)
def test_a_clean_process_reloads_identically_and_the_pipelines_run(family, clean_reload):
    model, tensors, outputs = clean_reload[family]
    tokenizer = model.tokenizer
    with torch.no_grad():
        reference = model(**tokenizer(TEXTS, padding=True, return_tensors="pt"))
    for name in ("sentence_logits", "token_logits", "sentence_embedding"):
        assert torch.equal(tensors[name], getattr(reference, name)), name
    assert torch.equal(tensors["embeddings"], model.encode(TEXTS, convert_to_tensor=True))
    assert outputs["predict"] == json.loads(json.dumps(model.predict(TEXTS)))

    # The saved tokenizer keeps its pad token and the prefix space: reloaded, pre-split words tokenise the same.
    words = TEXTS[0].split()
    assert outputs["pad_token"] == tokenizer.pad_token
    assert outputs["split_ids"] == tokenizer(words, is_split_into_words=True)["input_ids"]
    single = tokenizer(TEXTS[0], return_tensors="pt")
    assert outputs["pipeline_ids"] == single["input_ids"][0].tolist()

    # The standard pipelines read the right head on the same tokens.
    with torch.no_grad():
        alone = model(**single)
    probabilities = alone.sentence_logits[0].softmax(-1)
    assert outputs["text"][0]["label"] == SENTENCE_LABELS[int(probabilities.argmax())]
    assert outputs["text"][0]["score"] == pytest.approx(float(probabilities.max()), abs=1e-6)
    special = set(tokenizer.all_special_ids)
    tags = alone.token_logits[0].argmax(-1)
    expected = [TOKEN_LABELS[int(i)] for t, i in zip(single["input_ids"][0], tags) if int(t) not in special]
    assert [token["entity"] for token in outputs["tokens"]] == expected
