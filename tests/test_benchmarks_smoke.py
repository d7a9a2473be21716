"""benchmarks/speed.py: its counting and comparison helpers, and one tiny end-to-end run (sections a, b, e);
benchmarks/onnx_speed.py, benchmarks/constrained_decoding.py and benchmarks/atis_errors.py: one tiny
end-to-end run each."""

import importlib.util
import json

import pytest
import torch
from transformers import BertConfig, BertModel

from conftest import DEMO_DATA, DEMO_SENTENCE_LABELS, DEMO_TOKEN_LABELS, REPO, needs_shared_data


def load_benchmark(script, module_name):
    """benchmarks/<script> as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(module_name, REPO / "benchmarks" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def speed():
    return load_benchmark("speed.py", "speed_benchmark")


def test_pipeline_word_spans_follow_the_token_pipeline_rule(speed, tokenizer):
    text = "fly to st. louis i'd unbelievably"
    spans = speed.pipeline_word_spans(tokenizer, text)
    words = [text[start:end] for start, end in spans]
    # Punctuation is a word of its own for the pipeline ("i'd" is three words); "##" pieces join their word.
    assert words == ["fly", "to", "st", ".", "louis", "i", "'", "d", "unbelievably"]


def test_compare_predictions_counts_agreement_and_segmentation(speed, tokenizer):
    texts = ["fly to boston", "i'd like boston"]
    boston = {"entity_group": "city", "score": 0.9, "word": "boston", "start": 7, "end": 13}
    ours = [
        {"label": "flight", "score": 0.8, "entities": [boston]},
        {"label": "flight", "score": 0.7, "entities": []},
    ]
    text_outputs = [[{"label": "flight", "score": 0.8}], [{"label": "airfare", "score": 0.6}]]
    token_outputs = [[dict(boston, score=0.9 + 1e-7)], [{"entity_group": "city", "score": 0.5, "start": 9, "end": 15}]]
    result = speed.compare_predictions(texts, ours, text_outputs, token_outputs, tokenizer)
    assert (result["same_label"], result["same_entities"], result["identical"]) == (1, 1, False)
    assert result["texts_with_same_word_segmentation"] == 1  # "i'd" is one word for split_words, three for the pipeline
    assert result["same_entities_among_same_segmentation"] == 1
    assert result["max_abs_entity_score_diff"] == pytest.approx(1e-7, abs=1e-9)
    assert len(result["disagreement_examples"]) == 1


def test_encoder_flops_count_linear_weights_and_attention(speed):
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=50)
    encoder = BertModel(config, add_pooling_layer=False)
    weights = 2 * (4 * 32 * 32 + 2 * 32 * 64)  # per layer: Q, K, V, O and the two feed-forward matrices
    assert speed.linear_weights(encoder) == weights
    batch = {"input_ids": torch.zeros(3, 5, dtype=torch.long), "attention_mask": torch.tensor([[1] * 5, [1] * 3 + [0] * 2, [1] * 5])}
    computed, useful = speed.encoder_flops(encoder, [batch])
    assert computed == 2 * weights * 15 + 4 * 2 * 3 * 25 * 32
    assert useful == 2 * weights * 13 + 4 * 2 * (25 + 9 + 25) * 32


def test_paired_ratio_is_the_median_of_back_to_back_ratios(speed):
    ratio = speed.paired_ratio([3.0, 4.0, 9.0], [1.0, 2.0, 3.0])
    assert ratio["median"] == 3.0 and ratio["min"] == 2.0 and ratio["max"] == 3.0


@needs_shared_data
def test_a_tiny_run_writes_the_json_and_the_table(speed, minilm_path, tmp_path):
    output = tmp_path / "speed.json"
    report = speed.main(
        [
            "--sections", "a,b,e",
            "--model", str(tmp_path / "no-such-folder"),  # an untrained ATIS-shaped model: quicker, same code paths
            "--sentences", "8",
            "--encode-sentences", "8",
            "--batch-sizes", "4",
            "--headline-batch-size", "4",
            "--max-batches", "2",
            "--repeats", "1",
            "--matmul-size", "256",
            "--matmul-runs", "1",
            "--quiet",
            "--output", str(output),
        ]
    )
    saved = json.loads(output.read_text())
    assert saved["command"].startswith("python benchmarks/speed.py --sections a,b,e")
    assert saved["machine"]["torch_threads"] == torch.get_num_threads() and saved["machine"]["cpu_model"]
    a, b = (saved["results"][key]["4"] for key in "ab")
    e = saved["results"]["e"]["batches"]["4"]
    assert a["agreement"]["same_label"] == a["agreement"]["texts"] == 8
    assert b["max_abs_embedding_diff"] <= 1e-5
    assert e["computed_gflop"] >= e["useful_gflop"] > 0
    assert set(saved["goals"]) == {"a", "b", "e"}
    assert "| 4 |" in report["markdown"]


@needs_shared_data
def test_onnx_speed_tiny_run_scores_and_times_three_runtimes(tokenizer, tmp_path):
    """benchmarks/onnx_speed.py end to end on a tiny ATIS-shaped model: export, evaluate, agreement, timing, table."""
    pytest.importorskip("onnxruntime", reason="the onnx extra (onnx, onnxscript, onnxruntime) is not installed")
    from conftest import tiny_config
    from modeling_mtl import MultiTaskModel

    onnx_speed = load_benchmark("onnx_speed.py", "onnx_speed_benchmark")
    import speed  # on sys.path now: onnx_speed.py put benchmarks/ there

    sentence_labels, token_labels = speed.atis_label_lists()
    torch.manual_seed(0)
    model = MultiTaskModel(tiny_config(tokenizer.vocab_size, sentence_labels=sentence_labels,
                                       token_labels=token_labels))
    model.tokenizer = tokenizer
    model.save_pretrained(tmp_path / "model")
    output = tmp_path / "onnx.json"
    report = onnx_speed.main(["--model", str(tmp_path / "model"), "--split", "validation", "--sentences", "12", "--batch-sizes", "4",
                              "--repeats", "1", "--output", str(output)])
    saved = json.loads(output.read_text())
    assert saved["table"] == report["table"] and saved["command"].startswith("python benchmarks/onnx_speed.py")
    metrics = saved["accuracy"]["metrics"]
    assert set(metrics) == {"pytorch", "onnx fp32", "onnx int8"}
    assert metrics["onnx fp32"] == pytest.approx(metrics["pytorch"])  # the float32 graph scores exactly alike
    assert saved["accuracy"]["same_predict_output_as_pytorch"]["onnx fp32"] == 1.0
    assert saved["speed"]["4"]["texts"] == 12
    assert saved["speed"]["4"]["speedup_over_pytorch"]["onnx int8"]["median"] > 0
    assert len(saved["table"].splitlines()) == 5


def test_constrained_decoding_scores_both_decodings_end_to_end(make_tiny_model, tmp_path):
    module = load_benchmark("constrained_decoding.py", "constrained_decoding")
    model = make_tiny_model(sentence_labels=DEMO_SENTENCE_LABELS, token_labels=DEMO_TOKEN_LABELS)
    folder, output = str(tmp_path / "model"), tmp_path / "decoding.json"
    model.save_pretrained(folder)
    record = module.main(["--models", folder, "--data_dir", str(DEMO_DATA), "--repeats", "1", "--output", str(output)])
    assert json.loads(output.read_text()) == record
    result = record["results"][folder]
    for split in ("validation", "test"):
        assert set(result[split]) == {"argmax", "bio_viterbi"}
        assert set(result[split]["argmax"]) == {"intent_accuracy", "slot_f1", "exact_match"}
        # The decoding changes word tags only, never the intent.
        assert result[split]["argmax"]["intent_accuracy"] == result[split]["bio_viterbi"]["intent_accuracy"]
    assert result["predict"]["texts"] == 75 and result["predict"]["bio_viterbi_speed_vs_argmax"] > 0


def test_atis_errors_sorts_each_error_against_the_training_split(tmp_path):
    module = load_benchmark("atis_errors.py", "atis_errors")
    train = tmp_path / "data" / "train"
    train.mkdir(parents=True)
    (train / "seq.in").write_text("flights from boston to denver\nhow far is boston airport\nflight and fare\n")
    (train / "seq.out").write_text("O O B-fromloc.city_name O B-toloc.city_name\n"
                                   "O O O B-fromloc.airport_name I-fromloc.airport_name\nO O O\n")
    (train / "label").write_text("flight\ndistance\nflight#airfare\n")

    def record(gold_label, predicted_label, gold_tags, predicted_tags):
        return {"gold_label": gold_label, "predicted_label": predicted_label,
                "gold_tags": gold_tags.split(), "predicted_tags": predicted_tags.split()}

    records = [
        record("flight", "flight", "O B-fromloc.city_name", "O B-fromloc.city_name"),  # right
        record("flight", "flight", "B-fromloc.city_name B-toloc.city_name", "B-toloc.city_name I-toloc.city_name"),
        record("distance", "distance", "B-airport_name I-airport_name", "B-fromloc.airport_name O"),
        record("flight#airfare", "flight", "O B-fromloc.city_name", "B-toloc.city_name B-fromloc.city_name"),
        record("airline", "flight", "O O", "O O"),  # an intent train never has
        record("distance", "flight", "O", "O"),
    ]
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "test_predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    output = tmp_path / "errors.json"
    result = module.main(["--models", str(folder), "--data_dir", str(tmp_path / "data"), "--output", str(output)])
    assert json.loads(output.read_text()) == result
    counts = result["results"][str(folder)]
    assert counts["utterances"] == 6 and counts["exact_match_errors"] == 5
    assert counts["not_in_train"] == 2  # the unseen intent, and the role-less airport_name of "distance"
    assert counts["intent_errors"] == {"unseen_intent": 1, "combined_intent": 1, "other": 1}
    # role: fromloc -> toloc; boundary: B- -> I- of the same slot; two slot_unseen_under_intent words (the second
    # one predicted O still counts as not in train); spurious: an O word given a slot.
    assert counts["word_errors"] == {"slot_unseen_under_intent": 2, "role": 1, "boundary": 1, "missed": 0,
                                     "spurious": 1, "other": 0}
    assert "| " + str(folder) + " | 5 | 2 | 1 | 1 | 1 | 2 | 1 | 1 | 0 | 1 | 0 |" in result["markdown"]


def test_time_to_quality_records_a_curve_phases_and_the_minutes_to_a_target(tiny_encoder_dir, tmp_path):
    time_to_quality = load_benchmark("time_to_quality.py", "time_to_quality_benchmark")
    curve = [{"minutes": 1.0, "test": {"intent accuracy": 90, "slot F1": 80, "exact match": 50}},
             {"minutes": 2.0, "test": {"intent accuracy": 95, "slot F1": 79, "exact match": 60}},
             {"minutes": 3.0, "test": {"intent accuracy": 95, "slot F1": 81, "exact match": 60}}]
    target = {"intent accuracy": 92, "slot F1": 80, "exact match": 55}
    assert time_to_quality.minutes_to_reach(curve, target) == 3.0  # every metric at once
    assert time_to_quality.minutes_to_reach(curve, {**target, "exact match": 61}) is None

    output = tmp_path / "ttq.json"
    options = (f"--encoder {tiny_encoder_dir} --data_dir {DEMO_DATA} --num_train_epochs 2 --max_train_samples 48 "
               "--max_eval_samples 8 --per_device_train_batch_size 4 --max_seq_length 32")
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "time_to_quality.py"), "--variants",
         "--variant", f"tiny=configuration/demo.yaml:{options}",
         "--variant", f"grouped=configuration/demo.yaml:{options} --train_sampling_strategy group_by_length",
         "--seeds", "3", "--target", "0", "0", "0", "--output", str(output), "--scratch", str(tmp_path / "runs")],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(output.read_text())
    for name in ("tiny", "grouped"):
        (run,) = report["variants"][name]["runs"]
        assert [point["step"] for point in run["curve"]] == [12, 24]  # one point per dev evaluation
        assert all(set(point["test"]) == {"intent accuracy", "slot F1", "exact match"} for point in run["curve"])
        assert run["phases_seconds"]["forward"] > 0 and run["phases_seconds"]["backward"] > 0
        assert report["variants"][name]["summary"]["minutes_to_target"] == [run["curve"][0]["minutes"]]
    assert (report["variants"]["grouped"]["summary"]["padding_share"]
            < report["variants"]["tiny"]["summary"]["padding_share"])
    assert output.with_suffix(".png").stat().st_size > 10_000
    assert "| `grouped` |" in result.stdout
