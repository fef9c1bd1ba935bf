"""How the report words the way its models trained, from each model's ``recipe`` in results.json
(what its run.json recorded: optimizer, learning rate, schedule, epochs, batch size, augmentation,
input pipeline).

The setup's **Training** line says once what every model shares: the optimizer, the schedule, the
batch size, the epochs and the augmentation; what the models do not share it calls "per model". The
learning rate is given as the most common one with the models that use another named. A model that
departs from the line (an aspect it calls per model, or weight decay, label smoothing, its own input
size or trained backbone layers, which the line leaves unsaid) gets a line of its whole recipe below.
The line ends with how the kept weights were chosen: the best validation epoch, or, in a study without a
validation split (``study.val_size`` 0), the last epoch, which every number of the report then is."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from distillbench.reporting.text import listed

# The report's names for the optimizers a recipe names by their config name; another name (a
# plugin's) is shown as it is.
_OPTIMIZER_NAMES = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD"}

# What the Training line implies by saying nothing: a model with another value gets its own line.
_UNSAID = {"label_smoothing": 0.0, "input_size": None, "trainable_layers": 0}


def _optimizer_words(recipe: dict[str, Any]) -> str:
    name = _OPTIMIZER_NAMES.get(recipe["optimizer"], recipe["optimizer"])
    if recipe["optimizer"] != "sgd" or not recipe["momentum"]:  # momentum is sgd's option only
        return name
    return f"{name} ({'Nesterov ' if recipe['nesterov'] else ''}momentum {recipe['momentum']:g})"


def _schedule_words(recipe: dict[str, Any]) -> str:
    warmup = recipe["warmup_epochs"]
    if recipe["schedule"] == "constant":
        return "constant"
    if recipe["schedule"] == "cosine":
        return "cosine schedule" + (f" after {warmup:g} warm-up epoch(s)" if warmup else "")
    if recipe["schedule"] == "one_cycle":
        return "one-cycle schedule" + (f" rising for {warmup:g} epoch(s)" if warmup else "")
    if recipe["schedule"] == "multistep" and recipe.get("milestones"):  # recorded since the CIFAR-100 benchmark
        return f"x{recipe['gamma']:g} after epochs {', '.join(map(str, recipe['milestones']))}"
    return f"{recipe['schedule']} schedule"


def _decay_words(recipe: dict[str, Any]) -> str:
    """Weight decay and what it applies to; nothing when there is none (the paper)."""
    if not recipe["weight_decay"]:
        return ""
    where = "every parameter" if recipe.get("decay_all") else "kernels and weight matrices only"
    return f"weight decay {recipe['weight_decay']:g} on {where}"


def _augmentation_words(augment: str) -> str:
    if augment == "none":
        return "no augmentation (as in the paper)"
    if augment == "crop_flip":
        return "augmented by random 4-pixel shifts and horizontal flips (not in the paper)"
    return f"augmentation {augment!r} (not in the paper)"


# What the Training line says once when every model's recipe words it the same, in the line's order.
_SHARED: dict[str, Callable[[dict[str, Any]], str]] = {
    "optimizer": _optimizer_words,
    "schedule": _schedule_words,
    "weight decay": _decay_words,
    "batch size": lambda recipe: f"batch {recipe['batch_size']}",
    "epochs": lambda recipe: f"up to {recipe['epochs']} epochs",
    "augmentation": lambda recipe: _augmentation_words(recipe["augment"]),
}


def _learning_rates(models: list[dict[str, Any]]) -> str:
    """The learning rate most models use (on a tie, the first model's), and every other with its models."""
    titles: dict[float, list[str]] = {}
    for model in models:
        titles.setdefault(model["recipe"]["lr"], []).append(model["title"])
    usual = max(titles, key=lambda rate: len(titles[rate]))
    others = "; ".join(f"{rate:g} for {listed(names)}" for rate, names in titles.items() if rate != usual)
    return f"{usual:g}" + (f" ({others})" if others else "")


def _stopping_words(train: dict[str, Any], study: dict[str, Any]) -> str:
    """How the kept weights were chosen, and that test accuracy was tracked when it was (it chose nothing)."""
    tracked = (
        " Test accuracy was also measured after every epoch, for the Published vs reproduced section only: "
        "it chose no weights."
        if train.get("test_every_epoch")
        else ""
    )
    return _kept_words(train, study) + tracked


def _kept_words(train: dict[str, Any], study: dict[str, Any]) -> str:
    if study.get("val_size") == 0:  # absent in results.json written before it was recorded: a split
        return (
            "no validation split (`data.val_size: 0`): every training image trains, nothing stops early and the "
            "last epoch's weights are kept, so every number in this report is the last epoch's."
        )
    if train.get("patience"):
        return f"early stopping on validation loss (patience {train['patience']}), best weights restored."
    return "no early stopping, weights of the best validation epoch restored."


def _rate_words(schedule: str | None, rates: str) -> str:
    """The learning rates on their shared schedule (None: the schedule is said per model)."""
    if schedule is None:
        return f"learning rate {rates}"
    return f"constant learning rate {rates}" if schedule == "constant" else f"learning rate {rates}, {schedule}"


def _model_line(model: dict[str, Any]) -> str:
    """One model's whole recipe."""
    recipe = model["recipe"]
    size = f"{recipe['input_size']} px" if recipe["input_size"] else "the data's size"
    online = (
        " Its teachers ran online on its batches (each at its own input size)." if recipe["teachers_online"] else ""
    )
    return (
        f"  - {model['title']}: {_optimizer_words(recipe)}, lr {recipe['lr']:g} ({_schedule_words(recipe)}), "
        f"{_decay_words(recipe) or 'no weight decay'}, label smoothing {recipe['label_smoothing']:g}, "
        f"{recipe['epochs']} epochs of batch {recipe['batch_size']}, trainable layers {recipe['trainable_layers']}, "
        f"input {size} ({recipe['input_norm']} normalisation), augmentation {recipe['augment']}.{online}"
    )


def training_lines(results: dict[str, Any]) -> list[str]:
    """The setup's Training line, then one line per model that departs from it."""
    study = results["study"]
    train = study.get("train") or {}
    # A released checkpoint did not train: it has no place in how the models trained.
    models = [
        model for model in results["models"].values() if model.get("recipe") and not model["recipe"].get("loaded")
    ]
    if not models:
        # No model has finished, or its runs were recorded before recipes were (they came with the
        # choice of optimizer: every model trained with Adam at a constant rate then). The study's
        # training section is all there is to say.
        said = ["Adam, constant learning rate"] if results["models"] else []
        said += [
            f"batch {train.get('batch_size')}",
            f"up to {train.get('epochs')} epochs",
            _augmentation_words(train.get("augment", "none")),
        ]
        return [f"- **Training:** {', '.join([*said, _stopping_words(train, study)])}"]
    said, per_model = [], []
    for aspect, words in _SHARED.items():
        phrases = {words(model["recipe"]) for model in models}
        shared = phrases.pop() if len(phrases) == 1 else None
        if shared is None:
            per_model.append(aspect)
        if aspect == "schedule":
            said.append(_rate_words(shared, _learning_rates(models)))
        elif shared:  # an empty phrase says nothing (no weight decay)
            said.append(shared)
    if per_model:
        said.append(f"{listed(per_model)} per model (below)")
    lines = [f"- **Training:** {', '.join([*said, _stopping_words(train, study)])}"]
    # With an aspect said per model, every model needs its own line to say it.
    departing = [
        model for model in models if per_model or any(model["recipe"][name] != value for name, value in _UNSAID.items())
    ]
    if departing:
        lines += ["- **Per-model training** (models that differ from the line above):"]
        lines += [_model_line(model) for model in departing]
    return lines
