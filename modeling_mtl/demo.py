"""A Gradio demo of a multi-task model: `python -m modeling_mtl demo --model DIR_OR_REPO` (the `demo` extra).

    pip install -e ".[demo]"
    python -m modeling_mtl demo --model outputs/atis --port 7860
    python -m modeling_mtl space --model outputs/atis --output outputs/atis-space --repo_id you/atis-joint

Tab "One text": a text box (with examples from the model's own evaluation data when it has them), the sentence
label with its top scores (`gr.Label`), the entities highlighted in the text with their types and scores
(`gr.HighlightedText`), a line that says plainly when the model rejected the text as out of scope, and the raw
`predict` output (`gr.JSON`). Tab "Several texts": one text per line in, a table (one row per line) and the JSON
Lines file to download. Empty or oversize input gets a message in the page, never a stack trace.

This file is self-contained (gradio and the standard library; the model is any object with `predict` and a
`config`), because `python -m modeling_mtl space` copies it as a Space's `app.py`: run as a script, it reads
`space_config.json` beside it and loads the model with `AutoModel.from_pretrained(..., trust_remote_code=True)`,
so the Space needs only gradio, transformers and torch.
"""

import json
import os
import tempfile

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no usage reports sent from a demo

import gradio as gr  # noqa: E402

MAX_CHARS = 2000
MAX_LINES = 200
TOP_K = 5
SPACE_CONFIG = "space_config.json"


def check_text(text, max_chars=MAX_CHARS):
    """The message to show for an input that cannot be read, or None."""
    if text is None or not text.strip():
        return "Type a sentence first: the input is empty."
    if len(text) > max_chars:
        return f"The text is {len(text)} characters long; this demo reads at most {max_chars}."
    return None


def highlighted(text, prediction):
    """`gr.HighlightedText`'s value: the text with each entity's span, labelled `type (score)`."""
    return {"text": text, "entities": [
        {"entity": f"{entity['entity_group']} ({entity['score']:.2f})", "start": entity["start"], "end": entity["end"]}
        for entity in prediction["entities"]]}


def ranking(prediction):
    """`gr.Label`'s value: the sentence labels with their scores (the top one first); for a rejected text only the
    out-of-scope label, so the heading never shows a label the model did not give (the scores stay in the JSON)."""
    if "rejected_label" in prediction:
        return prediction["label"]
    items = prediction.get("intent_ranking") or [{"label": prediction["label"], "score": prediction["score"]}]
    return {item["label"]: float(item["score"]) for item in items}


def verdict(prediction):
    if "rejected_label" in prediction:
        return (f"**Out of scope**: the model rejected this text (`{prediction['label']}`). Its best guess was "
                f"`{prediction['rejected_label']}` with a score of {prediction['score']:.2f}, below what it trusts.")
    return f"**{prediction['label']}** (score {prediction['score']:.2f}), {len(prediction['entities'])} entities."


def build_demo(model, examples=None, title=None, max_chars=MAX_CHARS, max_lines=MAX_LINES):
    """The Gradio Blocks app for `model` (a `MultiTaskModel`, its ONNX twin, or one loaded with `AutoModel`)."""
    top_k = min(TOP_K, len(model.config.sentence_labels))
    title = title or "Sentence label and entities"

    def predict_one(text):
        problem = check_text(text, max_chars)
        if problem:
            return None, None, f"⚠️ {problem}", None
        try:
            (prediction,) = model.predict([text], top_k=top_k)
        except (TypeError, ValueError) as error:  # e.g. text the tokenizer cannot take
            return None, None, f"⚠️ {error}", None
        return ranking(prediction), highlighted(text, prediction), verdict(prediction), prediction

    def predict_lines(block):
        lines = [line for line in (block or "").splitlines() if line.strip()]
        if not lines:
            return None, None, "⚠️ Paste at least one line of text."
        if len(lines) > max_lines:
            return None, None, f"⚠️ {len(lines)} lines: this demo reads at most {max_lines} at a time."
        too_long = [number for number, line in enumerate(lines, start=1) if len(line) > max_chars]
        if too_long:
            return None, None, f"⚠️ Line {too_long[0]} is longer than {max_chars} characters."
        try:
            predictions = model.predict(lines, top_k=top_k)
        except (TypeError, ValueError) as error:  # as in the one-text tab
            return None, None, f"⚠️ {error}"
        rows = [[line, p["label"], round(p["score"], 4),
                 ", ".join(f"{e['word']} ({e['entity_group']})" for e in p["entities"]),
                 "yes" if "rejected_label" in p else ""] for line, p in zip(lines, predictions)]
        handle = tempfile.NamedTemporaryFile("w", suffix=".jsonl", prefix="predictions-", delete=False,
                                             encoding="utf-8")
        with handle:
            for line, prediction in zip(lines, predictions):
                handle.write(json.dumps({"text": line, **prediction}, ensure_ascii=False) + "\n")
        return rows, handle.name, f"{len(lines)} texts read."

    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(f"# {title}\nOne encoder pass gives the sentence label and the entities of the text.")
        with gr.Tab("One text"):
            text = gr.Textbox(label="Text", lines=2, max_lines=6, elem_id="text")
            if examples:
                gr.Examples(examples=[[example] for example in examples], inputs=text)
            submit = gr.Button("Read it", variant="primary", elem_id="submit")
            status = gr.Markdown(elem_id="status")
            with gr.Row():
                label = gr.Label(label="Sentence label", num_top_classes=top_k, elem_id="label")
                entities = gr.HighlightedText(label="Entities", elem_id="entities", combine_adjacent=False)
            raw = gr.JSON(label="predict output", elem_id="raw")
            outputs = [label, entities, status, raw]
            submit.click(predict_one, inputs=text, outputs=outputs)
            text.submit(predict_one, inputs=text, outputs=outputs)
        with gr.Tab("Several texts"):
            block = gr.Textbox(label="One text per line", lines=8, elem_id="lines")
            read_all = gr.Button("Read them", variant="primary", elem_id="submit_lines")
            batch_status = gr.Markdown(elem_id="batch_status")
            table = gr.Dataframe(headers=["text", "label", "score", "entities", "rejected"], elem_id="table",
                                 interactive=False, wrap=True)
            download = gr.File(label="predictions.jsonl", elem_id="download")
            read_all.click(predict_lines, inputs=block, outputs=[table, download, batch_status])
    return demo


def main():
    """Run as a Space's app.py: the model named in space_config.json, loaded with trust_remote_code."""
    from transformers import AutoModel

    folder = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(folder, SPACE_CONFIG), encoding="utf-8") as handle:
        config = json.load(handle)
    model_path = config["model"]
    if not os.path.isabs(model_path) and os.path.isdir(os.path.join(folder, model_path)):
        model_path = os.path.join(folder, model_path)
    model = AutoModel.from_pretrained(model_path, trust_remote_code=True).eval()
    demo = build_demo(model, examples=config.get("examples"), title=config.get("title"))
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))


if __name__ == "__main__":
    main()
