"""MultiTaskModel: forward and losses, pooling, encode, predict, save/load (also in a clean process), pipelines."""

import itertools
import json
import os
import subprocess
import sys
import textwrap

import datasets
import numpy
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, BertModel

from conftest import BLOCK_PACKAGE, SENTENCE_LABELS, SHARED_DATA, TOKEN_LABELS, is_valid_bio, needs_shared_data
from modeling_mtl import MultiTaskModel, split_words
from modeling_mtl.decoding_mtl import bio_to_entities, bio_viterbi, bio_viterbi_batch
from modeling_mtl.modeling_mtl import Pooling


def batch(tokenizer, texts):
    return tokenizer(texts, padding=True, return_tensors="pt")


def test_forward_returns_every_output(tiny_model, tokenizer):
    inputs = batch(tokenizer, ["fly to paris", "a much longer sentence about new laptops"])
    out = tiny_model(**inputs)
    seq_len = inputs["input_ids"].shape[1]
    assert out.sentence_logits.shape == (2, len(SENTENCE_LABELS))
    assert out.token_logits.shape == (2, seq_len, len(TOKEN_LABELS))
    assert out.sentence_embedding.shape == (2, 32)
    assert torch.allclose(out.sentence_embedding.norm(dim=1), torch.ones(2))
    assert out.loss is None and out.sentence_loss is None and out.token_loss is None


def test_loss_is_the_weighted_sum_of_the_task_losses(make_tiny_model, tokenizer):
    model = make_tiny_model(sentence_loss_weight=0.3, token_loss_weight=2.0)
    inputs = batch(tokenizer, ["fly to paris", "buy a laptop"])
    sentence_labels = torch.tensor([0, 1])
    token_labels = torch.full(inputs["input_ids"].shape, -100)
    token_labels[:, 1:3] = torch.tensor([[0, 1], [3, 4]])
    out = model(**inputs, sentence_labels=sentence_labels, token_labels=token_labels)
    expected_sentence = torch.nn.functional.cross_entropy(out.sentence_logits, sentence_labels)
    expected_token = torch.nn.functional.cross_entropy(out.token_logits.reshape(-1, 5), token_labels.reshape(-1))
    assert torch.allclose(out.sentence_loss, expected_sentence)
    assert torch.allclose(out.token_loss, expected_token)
    assert torch.allclose(out.loss, 0.3 * expected_sentence + 2.0 * expected_token)


def test_an_absent_or_fully_masked_task_adds_nothing_but_keeps_the_graph(tiny_model, tokenizer):
    tiny_model.train()
    inputs = batch(tokenizer, ["fly to paris", "buy a laptop"])
    only_sentence = tiny_model(**inputs, sentence_labels=torch.tensor([0, 2]))
    assert only_sentence.token_loss is None
    assert torch.allclose(only_sentence.loss, only_sentence.sentence_loss)

    # One example has a sentence label, the other is masked; no token label at all.
    masked = tiny_model(
        **inputs,
        sentence_labels=torch.tensor([1, -100]),
        token_labels=torch.full(inputs["input_ids"].shape, -100),
    )
    assert masked.token_loss.item() == 0.0
    assert torch.isfinite(masked.loss)
    masked.loss.backward()
    # The token head took part in the graph (zero gradient, not None): DDP reduces the same parameters everywhere.
    assert tiny_model.token_head.classifier.weight.grad is not None
    assert torch.count_nonzero(tiny_model.token_head.classifier.weight.grad) == 0
    assert torch.count_nonzero(tiny_model.sentence_head.classifier.weight.grad) > 0


def test_num_items_in_batch_makes_accumulated_halves_equal_the_full_batch(tiny_model, tokenizer):
    texts = ["fly to paris", "buy a laptop", "the senate voted today", "hello"]
    inputs = batch(tokenizer, texts)
    sentence_labels = torch.tensor([0, 1, -100, 2])
    token_labels = torch.full(inputs["input_ids"].shape, -100)
    token_labels[0, 1:4] = torch.tensor([0, 0, 1])
    token_labels[2, 1:3] = torch.tensor([3, 4])
    full = tiny_model(**inputs, sentence_labels=sentence_labels, token_labels=token_labels).loss
    counts = {"sentence": int((sentence_labels != -100).sum()), "token": int((token_labels != -100).sum())}
    halves = sum(
        tiny_model(
            **{key: value[part] for key, value in inputs.items()},
            sentence_labels=sentence_labels[part],
            token_labels=token_labels[part],
            num_items_in_batch=counts,
        ).loss
        for part in (slice(0, 2), slice(2, 4))
    )
    assert torch.allclose(full, halves, atol=1e-6)


@pytest.mark.parametrize("mode", ["mean", "max", "cls", "last"])
def test_pooling_ignores_padding(mode, make_tiny_model):
    pooling = Pooling(make_tiny_model(pooling_mode=mode).config)
    states = torch.randn(1, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0]])
    padded = states.clone()
    padded[:, 3:] = 100.0
    expected = {
        "mean": states[0, :3].mean(0),
        "max": states[0, :3].max(0).values,
        "cls": states[0, 0],
        "last": states[0, 2],
    }[mode]
    assert torch.allclose(pooling(padded, mask)[0], expected)
    if mode == "last":  # left padding
        left = torch.cat([padded[:, 3:], states[:, :3]], dim=1)
        assert torch.allclose(pooling(left, torch.tensor([[0, 0, 1, 1, 1]]))[0], states[0, 2])


def test_encode_keeps_input_order_and_matches_forward(tiny_model, tokenizer):
    texts = ["short", "a considerably longer sentence than the first one", "mid length text"]
    embeddings = tiny_model.encode(texts, batch_size=2)
    assert embeddings.shape == (3, 32)
    for index, text in enumerate(texts):
        alone = tiny_model(**batch(tokenizer, [text])).sentence_embedding[0]
        assert torch.allclose(torch.from_numpy(embeddings[index]), alone, atol=1e-5)
    assert tiny_model.encode("short").shape == (32,)
    assert tiny_model.encode([]).shape == (0, 32)
    assert torch.is_tensor(tiny_model.encode(texts, convert_to_tensor=True))


def force_tags(model, tag):
    """Make the token head predict `tag` for every token (and so every word)."""
    with torch.no_grad():
        model.token_head.classifier.weight.zero_()
        model.token_head.classifier.bias.fill_(0.0)
        model.token_head.classifier.bias[model.config.token_label2id[tag]] = 10.0


IRREGULAR_TEXTS = [
    "  Fly from Boston,  to   São Paulo on 3:30pm!!  ",
    "Book\ta flight\nto Zürich (CH) — tomorrow?",
    "rendez-vous à Montréal l'été prochain…",
    "東京 から 大阪 まで",
    "emoji 😀 and @user #tag don't",
]


@pytest.mark.parametrize("tag", ["B-LOC", "I-PER"])
def test_predict_spans_point_into_the_original_text(tiny_model, tag):
    force_tags(tiny_model, tag)
    results = tiny_model.predict(IRREGULAR_TEXTS + [["pre", "split", "words"]], batch_size=2)
    assert len(results) == len(IRREGULAR_TEXTS) + 1
    for text, result in zip(IRREGULAR_TEXTS + ["pre split words"], results):
        assert result["label"] in SENTENCE_LABELS and 0.0 <= result["score"] <= 1.0
        assert result["entities"], text
        for entity in result["entities"]:
            assert text[entity["start"] : entity["end"]] == entity["word"]
            assert entity["entity_group"] == tag[2:]
        words = split_words(text)
        if tag.startswith("B-"):  # every word its own entity
            assert [e["word"] for e in result["entities"]] == [w for w, _, _ in words]
        else:  # one entity from the first word to the last
            assert result["entities"][0]["start"] == words[0][1]
            assert result["entities"][-1]["end"] == words[-1][2]


def test_bio_to_entities_groups_words():
    text = "fly from new york to paris"
    words = split_words(text)
    tags = ["O", "O", "B-LOC", "I-LOC", "O", "I-LOC"]
    entities = bio_to_entities(text, tags, [1.0, 1.0, 0.8, 0.6, 1.0, 0.5], [(s, e) for _, s, e in words])
    assert [(e["word"], e["entity_group"]) for e in entities] == [("new york", "LOC"), ("paris", "LOC")]
    assert entities[0]["score"] == pytest.approx(0.7)


def test_bio_viterbi_finds_the_best_valid_sequence():
    labels = ("O", "B-A", "I-A", "B-B", "I-B")
    generator = torch.Generator().manual_seed(0)
    for length in range(1, 5):
        for _ in range(20):
            log_probs = (3 * torch.randn(length, len(labels), generator=generator)).log_softmax(-1)
            valid = [path for path in itertools.product(range(len(labels)), repeat=length)
                     if is_valid_bio([labels[i] for i in path])]
            best = max(valid, key=lambda path: float(sum(log_probs[i, tag] for i, tag in enumerate(path))))
            assert tuple(bio_viterbi(log_probs, labels)) == best
    assert bio_viterbi(torch.zeros(0, len(labels)), labels) == []


def test_bio_viterbi_batch_decodes_each_sequence_as_alone():
    labels = ("O", "B-A", "I-A", "B-B", "I-B", "I-C")  # I-C has no B-C: never valid
    generator = torch.Generator().manual_seed(1)
    sequences = [(3 * torch.randn(length, len(labels), generator=generator)).log_softmax(-1)
                 for length in (4, 0, 1, 7, 3, 7, 0)]
    decoded = bio_viterbi_batch(sequences, labels)
    assert [len(path) for path in decoded] == [len(sequence) for sequence in sequences]
    assert decoded == [bio_viterbi(sequence, labels) for sequence in sequences]
    assert all(is_valid_bio([labels[i] for i in path]) and 5 not in path for path in decoded)
    assert bio_viterbi_batch([], labels) == []


def entity_key(entity):
    return entity["entity_group"], entity["word"], entity["start"], entity["end"]


def test_token_decoding_chooses_between_argmax_and_valid_bio(tiny_model):
    labels = tiny_model.config.token_labels
    probs = torch.full((5, len(labels)), 0.0)
    # Positions: [CLS], word 0, word 1 (first sub-token), word 1 (second sub-token), [SEP].
    for position, weights in ((1, {"O": 0.6, "B-PER": 0.3, "I-PER": 0.1}), (2, {"O": 0.2, "B-PER": 0.3, "I-PER": 0.5}),
                              (3, {"I-LOC": 1.0}), (0, {"O": 1.0}), (4, {"O": 1.0})):
        for tag, weight in weights.items():
            probs[position, labels.index(tag)] = weight
    word_ids = [None, 0, 1, 1, None]
    tags, scores, untagged = tiny_model.decode_words(probs, word_ids, 3)
    assert (tags, untagged) == (["O", "I-PER", "O"], 1) and scores == pytest.approx([0.6, 0.5, 0.0])
    tiny_model.config.token_decoding = "bio_viterbi"
    tags, scores, untagged = tiny_model.decode_words(probs, word_ids, 3)
    assert (tags, untagged) == (["O", "B-PER", "O"], 1) and scores == pytest.approx([0.6, 0.3, 0.0])
    # From a random head, argmax gives invalid sequences; bio_viterbi never does, whatever the strategy.
    with torch.no_grad():
        tiny_model.token_head.classifier.weight.normal_(std=5.0)
    word_lists = [[word for word, _, _ in split_words(text)] for text in IRREGULAR_TEXTS]
    encoding = tiny_model.tokenize_words(word_lists)
    token_probs = tiny_model.score_batch(tiny_model.encoder_inputs(encoding))["token_probs"]
    validity = {}
    for decoding, strategy in itertools.product(("argmax", "bio_viterbi"), ("first", "average", "max")):
        tiny_model.config.token_decoding = decoding
        validity[decoding, strategy] = [
            is_valid_bio(tiny_model.decode_words(token_probs[row], encoding.word_ids(row), len(words), strategy)[0])
            for row, words in enumerate(word_lists)
        ]
    assert not all(validity["argmax", "first"])
    assert all(all(validity["bio_viterbi", strategy]) for strategy in ("first", "average", "max"))
    # predict decodes a whole batch in one Viterbi pass: the same as each text on its own (scores up to the float
    # noise of padding).
    batched, alone = (tiny_model.predict(IRREGULAR_TEXTS, batch_size=size) for size in (8, 1))
    assert [[entity_key(e) for e in result["entities"]] for result in batched] == [
        [entity_key(e) for e in result["entities"]] for result in alone
    ]
    assert [e["score"] for r in batched for e in r["entities"]] == pytest.approx(
        [e["score"] for r in alone for e in r["entities"]], abs=1e-5
    )
    batch = tiny_model.decode_words_batch(
        [(token_probs[row], encoding.word_ids(row), len(words)) for row, words in enumerate(word_lists)], "average"
    )
    assert batch == [
        tiny_model.decode_words(token_probs[row], encoding.word_ids(row), len(words), "average")
        for row, words in enumerate(word_lists)
    ]


def test_bad_inputs_name_the_offending_index(tiny_model):
    with pytest.raises(TypeError, match="input 1 is NoneType"):
        tiny_model.predict(["ok", None])
    with pytest.raises(TypeError, match="input 0 is list"):
        tiny_model.encode([["a", "b"]])
    with pytest.raises(ValueError, match="input 1: word 1 is 'b c'"):
        tiny_model.predict(["ok", ["a", "b c"]])
    with pytest.raises(TypeError, match="expected a list of texts"):
        tiny_model.predict("not a list")
    with pytest.raises(TypeError, match="expected a list of texts, got set"):
        tiny_model.encode({"a", "b"})


def test_predict_and_encode_take_a_datasets_column(tiny_model):
    data = datasets.Dataset.from_dict({"text": ["fly to boston", "book a hotel"], "words": [["a", "b"], ["c"]]})
    assert tiny_model.predict(data["text"]) == tiny_model.predict(["fly to boston", "book a hotel"])
    assert tiny_model.predict(data["words"]) == tiny_model.predict([["a", "b"], ["c"]])
    assert numpy.array_equal(tiny_model.encode(data["text"]), tiny_model.encode(["fly to boston", "book a hotel"]))


def test_from_encoder_loads_the_encoder_weights_exactly(minilm_path):
    model = MultiTaskModel.from_encoder(minilm_path, sentence_labels=["a", "b"], token_labels=["O", "B-X", "I-X"])
    reference = BertModel.from_pretrained(minilm_path).state_dict()
    ours = model.encoder.state_dict()
    assert set(ours) == {key for key in reference if not key.startswith("pooler.")}
    assert all(torch.equal(ours[key], reference[key]) for key in ours)
    # Read from the sentence-transformers folder: mean pooling, Normalize module, max_seq_length 256.
    assert (model.config.pooling_mode, model.config.normalize_embeddings, model.config.max_seq_length) == (
        "mean",
        True,
        256,
    )
    assert MultiTaskModel.from_encoder(minilm_path, pooling_mode="cls").config.pooling_mode == "cls"


def test_default_encoder_id_resolves_offline_to_the_shipped_copy(minilm_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    model = MultiTaskModel.from_encoder(sentence_labels=["a", "b"])
    assert model.config.encoder_name_or_path == "sentence-transformers/all-MiniLM-L6-v2"
    reference = BertModel.from_pretrained(minilm_path).state_dict()
    key = "embeddings.word_embeddings.weight"
    assert torch.equal(model.encoder.state_dict()[key], reference[key])


def test_save_writes_a_complete_folder_and_reloads(tiny_model, tokenizer, tmp_path):
    tiny_model.save_pretrained(tmp_path / "model")
    names = set(os.listdir(tmp_path / "model"))
    assert {"config.json", "model.safetensors", "configuration_mtl.py", "modeling_mtl.py", "tokenizer.json"} <= names
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in names)
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_mtl.MultiTaskModel"
    loaded = AutoModel.from_pretrained(tmp_path / "model")
    assert isinstance(loaded, MultiTaskModel) and loaded.tokenizer is not None
    inputs = batch(tokenizer, ["fly to paris"])
    assert torch.equal(loaded(**inputs).token_logits, tiny_model(**inputs).token_logits)
    # Saving again over the folder replaces it in place.
    tiny_model.save_pretrained(tmp_path / "model")
    assert set(os.listdir(tmp_path / "model")) == names


def test_a_combined_sentence_label_scores_as_the_sum_of_its_parts(make_tiny_model, tokenizer, tmp_path):
    labels = ["flight", "airfare", "flight#airfare", "city"]
    model = make_tiny_model(sentence_labels=labels, sentence_label_separator="#")
    head = model.sentence_head
    assert head.classifier.out_features == 3 and head.label_bias.shape == (4,)  # parts: flight, airfare, city
    with torch.no_grad():
        head.label_bias.copy_(torch.tensor([0.1, 0.2, -0.3, 0.4]))
    inputs = batch(tokenizer, ["flights and fares to boston", "list la"])
    outputs = model(**inputs)
    parts = head.classifier(model.pooling(outputs.last_hidden_state, inputs["attention_mask"]))
    expected = torch.stack([parts[:, 0], parts[:, 1], parts[:, 0] + parts[:, 1], parts[:, 2]], 1)
    assert torch.allclose(outputs.sentence_logits, expected + head.label_bias, atol=1e-6)
    # The combined label trains its parts' weights: what it learns is shared with "flight" and "airfare".
    model.train()
    model(**inputs, sentence_labels=torch.tensor([2, 2])).loss.backward()
    gradient_norms = head.classifier.weight.grad.norm(dim=1)
    assert gradient_norms[0] > 0 and gradient_norms[1] > 0
    model.eval()
    model.save_pretrained(tmp_path / "model")
    loaded = AutoModel.from_pretrained(tmp_path / "model")
    assert loaded.config.sentence_label_separator == "#"
    assert torch.equal(loaded(**inputs).sentence_logits, model(**inputs).sentence_logits)
    assert [result["label"] for result in loaded.predict(["flights and fares to boston"])] == [
        labels[int(outputs.sentence_logits[0].argmax())]
    ]


def test_an_interrupted_save_never_leaves_a_folder_that_half_loads(tiny_model, tmp_path, monkeypatch):
    target = tmp_path / "model"
    tiny_model.save_pretrained(target)
    real_replace = os.replace
    calls = []

    def crash_after_first_file(source, destination):
        calls.append(destination)
        if len(calls) > 1:
            raise KeyboardInterrupt("killed mid-save")
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", crash_after_first_file)
    with pytest.raises(KeyboardInterrupt):
        tiny_model.save_pretrained(target)
    monkeypatch.setattr(os, "replace", real_replace)
    assert not (target / "config.json").exists()
    with pytest.raises((OSError, ValueError), match="config.json"):
        AutoModel.from_pretrained(target)
    assert not [name for name in os.listdir(tmp_path) if ".saving-" in name]  # staging cleaned up


CLEAN_CLIENT = BLOCK_PACKAGE + textwrap.dedent(
    """
    import torch
    from safetensors.torch import save_file
    from transformers import (AutoModel, AutoModelForSequenceClassification, AutoModelForTokenClassification,
                              AutoTokenizer, pipeline)

    folder, out = sys.argv[1], sys.argv[2]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True)
    assert "transformers_modules" in type(model).__module__, type(model).__module__
    inputs = model.tokenizer(["fly from boston to new york", "buy a new laptop"], padding=True, return_tensors="pt")
    output = model(**inputs)
    tensors = {
        "sentence_logits": output.sentence_logits,
        "token_logits": output.token_logits,
        "sentence_embedding": output.sentence_embedding,
        "embeddings": model.encode(["fly from boston to new york", "buy a new laptop"], convert_to_tensor=True),
        "view_sentence": AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)(**inputs).logits,
        "view_token": AutoModelForTokenClassification.from_pretrained(folder, trust_remote_code=True)(**inputs).logits,
    }
    save_file({k: v.contiguous() for k, v in tensors.items()}, out + "/tensors.safetensors")
    text = pipeline("text-classification", model=folder, trust_remote_code=True)("fly from boston to new york")
    tokens = pipeline("token-classification", model=folder, trust_remote_code=True)("fly from boston to new york")
    import json
    model.config.token_decoding = "bio_viterbi"
    predict_bio_viterbi = model.predict(["fly from boston to new york"])
    model.config.token_decoding = "argmax"
    json.dump({"text": text, "tokens": [{k: (float(v) if k == "score" else v) for k, v in t.items()} for t in tokens],
               "predict": model.predict(["fly from boston to new york"]),
               "predict_bio_viterbi": predict_bio_viterbi}, open(out + "/pipelines.json", "w"))
    """
)


def run_clean_client(folder, out):
    script = out / "client.py"
    script.write_text(CLEAN_CLIENT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-I", str(script), str(folder), str(out)], cwd=out, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return load_file(out / "tensors.safetensors"), json.loads((out / "pipelines.json").read_text())


@pytest.mark.parametrize("separator", [None, "#"])  # "#": the sentence head that scores label parts
def test_clean_client_loads_the_folder_with_trust_remote_code(make_tiny_model, tokenizer, tmp_path, separator):
    tiny_model = make_tiny_model(sentence_label_separator=separator)
    force_tags(tiny_model, "B-LOC")
    with torch.no_grad():
        tiny_model.token_head.classifier.weight.normal_()  # keep it deterministic but not constant
    folder, out = tmp_path / "model", tmp_path / "client"
    out.mkdir()
    tiny_model.save_pretrained(folder)
    tensors, outputs = run_clean_client(folder, out)

    texts = ["fly from boston to new york", "buy a new laptop"]
    inputs = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        reference = tiny_model(**inputs)
    assert torch.equal(tensors["sentence_logits"], reference.sentence_logits)
    assert torch.equal(tensors["token_logits"], reference.token_logits)
    assert torch.equal(tensors["sentence_embedding"], reference.sentence_embedding)
    assert torch.equal(tensors["view_sentence"], reference.sentence_logits)
    assert torch.equal(tensors["view_token"], reference.token_logits)
    assert torch.allclose(tensors["embeddings"], torch.from_numpy(tiny_model.encode(texts)), atol=1e-6)

    probabilities = reference.sentence_logits[0].softmax(-1)
    assert outputs["text"][0]["label"] == SENTENCE_LABELS[int(probabilities.argmax())]
    assert outputs["text"][0]["score"] == pytest.approx(float(probabilities.max()), abs=1e-6)
    token_ids = reference.token_logits[0].argmax(-1)
    expected_tags = [TOKEN_LABELS[int(i)] for i, m in zip(token_ids[1:-1], inputs["attention_mask"][0][1:-1]) if m]
    assert [t["entity"] for t in outputs["tokens"]] == [tag for tag in expected_tags if tag != "O"]
    assert outputs["predict"] == json.loads(json.dumps(tiny_model.predict(["fly from boston to new york"])))
    tiny_model.config.token_decoding = "bio_viterbi"
    expected = json.loads(json.dumps(tiny_model.predict(["fly from boston to new york"])))
    assert outputs["predict_bio_viterbi"] == expected


@needs_shared_data
def test_encode_matches_sentence_transformers_on_real_sentences(minilm_path):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    import csv

    sentences = []
    with open(SHARED_DATA / "stsbenchmark" / "sts-test.csv", encoding="utf-8") as handle:
        for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            sentences.extend(row[5:7])
            if len(sentences) >= 300:
                break
    reference = sentence_transformers.SentenceTransformer(minilm_path, device="cpu").encode(sentences, batch_size=32)
    model = MultiTaskModel.from_encoder(minilm_path, sentence_labels=["a", "b"])
    ours = model.encode(sentences, batch_size=32)
    assert ours.shape == reference.shape == (300, 384)
    assert abs(ours - reference).max() <= 1e-5
