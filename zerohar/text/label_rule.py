"""The one rule for which texts stand for a label: in training (Stage II), evaluation, the label index and
`zerohar classify` alike, so a model always meets a label in the form it was trained to read."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from zerohar.errors import ZeroharError
from zerohar.text.describe import describe_labels
from zerohar.text.labels import descriptions_for, known_datasets, template_descriptions

logger = logging.getLogger(__name__)


def label_texts(
    labels: Sequence[str],
    *,
    label_text: str = "descriptions",
    written: Mapping[str, list[str]] | None = None,
    descriptions: str | Path | None = None,
    dataset: str | None = None,
    describe: bool = False,
    llm_model: str | None = None,
    base_url: str | None = None,
) -> dict[str, list[str]]:
    """The one rule for which texts stand for a label, in training, evaluation, the label index and classify.

    - `label_text="names"` (a model trained on label names): a label's only text is its name.
    - Otherwise the first of: descriptions the user wrote (`written`, e.g. a labels JSON file), the run's
      descriptions file (`descriptions`), the shipped file of the run's dataset (`dataset`), any other
      shipped file; a label none of them describes gets LLM descriptions with `describe`, else its name in
      templates (:func:`~zerohar.text.labels.template_descriptions`).

    Labels match a source exactly, else ignoring case and repeated whitespace
    (see :func:`~zerohar.text.labels.descriptions_for`).

    Returns:
        label -> its texts, in the order of `labels`.
    """
    if label_text == "names":
        return {lab: [lab] for lab in labels}
    sources: list = [dict(written)] if written else []
    if descriptions:
        sources.append(descriptions)
    if dataset and dataset in known_datasets():
        sources.append(dataset)
    sources.append(None)  # every shipped file
    texts = descriptions_for(list(labels), known=sources)
    if describe:
        missing = [lab for lab in labels if texts[lab] == template_descriptions(lab)]
        if missing:
            texts.update(_llm_descriptions(missing, llm_model, base_url))
    return texts


def _llm_descriptions(labels: list[str], llm_model: str | None, base_url: str | None) -> dict[str, list[str]]:
    """LLM descriptions for `labels` (`zerohar describe`'s API)."""
    if not llm_model:
        raise ZeroharError("--describe needs --llm-model (the model name of an OpenAI-compatible server)")
    logger.info("asking %s for descriptions of %s", llm_model, ", ".join(repr(lab) for lab in labels))
    result = describe_labels(labels, model=llm_model, base_url=base_url)
    return {lab: list(result[lab]) for lab in labels}
