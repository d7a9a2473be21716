"""MultiTaskConfig: validation, label maps, nested encoder config and JSON round trip."""

import pytest
from transformers import AutoConfig, BertConfig

from modeling_mtl import MultiTaskConfig


def make(**overrides):
    settings = dict(
        encoder_config=BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8),
        sentence_labels=["a", "b"],
        token_labels=["O", "B-X", "I-X"],
    )
    settings.update(overrides)
    return MultiTaskConfig(**settings)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(sentence_labels=[]), "`sentence_labels` is empty"),
        (dict(sentence_labels="ab"), "must be a list of label strings"),
        (dict(sentence_labels=["a", "a", "b"]), "duplicate labels: ['a']"),
        (dict(sentence_labels=["a", ""]), "`sentence_labels`[1] is ''"),
        (dict(token_labels=["O", "B-X", "B-X"]), "duplicate labels: ['B-X']"),
        (dict(token_labels=["B-X", "I-X"]), "must contain the outside tag 'O'"),
        (dict(token_labels=["O", "PER"]), "`token_labels`[1] is 'PER'"),
        (dict(pooling_mode="sum"), "`pooling_mode` is 'sum'; choose one of ['mean', 'cls', 'max', 'last']"),
        (dict(head_dropout=1.5), "`head_dropout` must be in [0, 1)"),
        (dict(token_decoding="crf"), "`token_decoding` is 'crf'; choose one of ['argmax', 'bio_viterbi']"),
        (dict(token_loss_weight=-1.0), "`token_loss_weight` must be >= 0"),
        (dict(sentence_label_separator=" "), "`sentence_label_separator` must be a non-blank string or None"),
        (dict(sentence_labels=["a", "a##b"], sentence_label_separator="#"),
         "`sentence_labels`[1] is 'a##b': split on '#' it has an empty part"),
        (dict(max_seq_length=1024), "exceeds the encoder's max_position_embeddings (512)"),
    ],
)
def test_invalid_settings_are_refused_with_a_clear_message(overrides, message):
    with pytest.raises(ValueError) as error:
        make(**overrides)
    assert message in str(error.value)


def test_label_maps_follow_the_label_lists():
    config = make(sentence_labels=["x", "y", "z"])
    assert config.id2label == {0: "x", 1: "y", 2: "z"} and config.num_labels == 3
    assert config.sentence_label2id == {"x": 0, "y": 1, "z": 2}
    assert config.token_id2label == {0: "O", 1: "B-X", 2: "I-X"}
    assert config.token_label2id["I-X"] == 2


def test_json_round_trip_keeps_everything(tmp_path):
    config = make(pooling_mode="cls", normalize_embeddings=False, token_loss_weight=0.5, max_seq_length=128,
                  token_decoding="bio_viterbi", sentence_label_separator="#")
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, MultiTaskConfig)
    assert isinstance(loaded.encoder_config, BertConfig) and loaded.encoder_config.hidden_size == 32
    for name in ("sentence_labels", "token_labels", "pooling_mode", "normalize_embeddings", "token_loss_weight",
                 "max_seq_length", "token_decoding", "sentence_label_separator", "id2label"):
        assert getattr(loaded, name) == getattr(config, name), name
    assert loaded.auto_map["AutoModelForTokenClassification"] == "modeling_mtl.MultiTaskForTokenClassification"


def test_defaults_build_without_arguments():
    # transformers builds a config with no argument to compute the diff it saves.
    config = MultiTaskConfig()
    assert config.pooling_mode == "mean" and config.normalize_embeddings
    assert config.token_decoding == "argmax"  # what the standard token-classification pipeline does
    assert config.encoder_config.model_type == "bert"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sentence_temperature": 0}, r"`sentence_temperature` must be a positive number, got 0"),
        ({"sentence_temperature": float("inf")}, r"`sentence_temperature` must be a positive number"),
        ({"sentence_temperature": "2"}, r"`sentence_temperature` must be a positive number, got '2'"),
        ({"reject_threshold": 1.5}, r"`reject_threshold` must be a score in \[0, 1\] or None, got 1.5"),
        ({"ambiguity_margin": -0.1}, r"`ambiguity_margin` must be a score in \[0, 1\]"),
        ({"reject_threshold": True}, r"`reject_threshold` must be a score"),
        ({"out_of_scope_label": " "}, r"`out_of_scope_label` must be a non-empty string"),
    ],
)
def test_rejection_settings_are_checked(overrides, message):
    with pytest.raises(ValueError, match=message):
        MultiTaskConfig(sentence_labels=["a", "b"], **overrides)
    assert MultiTaskConfig(sentence_labels=["a", "b"], reject_threshold=0.5, ambiguity_margin=0.1).reject_threshold == 0.5


@pytest.mark.parametrize(("options", "message"), [
    (["--reject_threshold", "2"], r"reject_threshold is 2.0; give a score in \[-1, 1\]"),  # the default: a cosine
    (["--reject_threshold", "-0.5", "--reject_score", "softmax"], r"reject_threshold is -0.5; give a score in \[0, 1\]"),
    (["--reject_threshold", "maybe"], r"reject_threshold is 'maybe'; give a score in \[-1, 1\]"),
    (["--reject_score", "energy"], r"reject_score is 'energy'; choose one of \['softmax', 'centroid_cosine'\]"),
])
def test_run_file_rejection_keys_are_checked(options, message, tmp_path):
    from modeling_mtl.training_args import parse_arguments

    with pytest.raises(ValueError, match=message):
        parse_arguments(["--output_dir", str(tmp_path), *options])
