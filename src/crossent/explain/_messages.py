"""The words of the walk-through, one table per language; numbers and formulas are shared.

Every sentence, label and heading that ``crossent explain`` shows (text, picture, page) is a
template here, with ``{name}`` fields that the caller fills with numbers already formatted by
the shared formatters. The interactive page receives these same tables and fills the same
templates in the browser, so a language is added by adding one table, nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["LANGS", "MESSAGES", "check_lang", "fill", "message"]

_EN: dict[str, str] = {
    # text
    "title": "Cross-entropy of one example, step by step",
    "scores_line": "scores: {scores}; target: {target}",
    "target_class": "{name} (class {index})",
    "target_dist": "the distribution {dist}",
    "options_line": "options: {options}",
    "list_sep": "; ",
    "opt_weight": "class weights {v}",
    "opt_smoothing": "label smoothing {v}",
    "opt_temperature": "temperature {v}",
    "opt_softcap": "soft-cap {v}",
    "opt_zloss": "z-loss {v}",
    "how_temperature": "divided by the temperature {t}",
    "how_softcap": "soft-capped to z = {c}·tanh(z/{c})",
    "how_join": " and ",
    "step_transform": "{step}. Transform: the scores are {how} (column z).",
    "src_score": "score",
    "src_z": "z",
    "step_shift": (
        "{step}. Shift: subtract the largest {src}, {m}, from every {src}. Softmax is "
        "unchanged, and exp cannot overflow: exp(10000) is inf in float64, but "
        "exp(10000 - 10000) = 1."
    ),
    "step_softmax": (
        "{step}. Exponentiate and normalize: p = exp(shifted) / sum, with sum = {sum}; every p "
        "lies between 0 and 1, and they add up to 1."
    ),
    "step_loss_plain": "{step}. Loss: -log p of the target class; its gradient is p - y.",
    "step_loss": (
        "{step}. Loss: H(q, p) = -sum of w·q·log p over the classes (column w·q·(-log p))"
        "{zpart}; dloss/ds is its gradient."
    ),
    "step_loss_z": " plus the z-loss {z}·lse²",
    "h_class": "class",
    "h_score": "score",
    "h_shifted": "shifted",
    "h_target": "target",
    "h_smoothed": "q (smoothed)",
    "h_target_q": "target q",
    "h_grad_plain": "p - y",
    "h_grad": "dloss/ds",
    "row_sum": "sum",
    "loss_plain": "loss = -log p({name}) = -log {p} = {loss}",
    "loss_underflow": (
        "(p({name}) underflows to 0 in float64, yet the loss is finite: -log p = log(sum) - "
        "shifted score = {log_sum} + {minus_shifted}, computed by log_softmax without ever "
        "taking log(0).)"
    ),
    "loss_terms_z": (
        "loss = sum of w·q·(-log p) + z-loss·lse² = {data} + {z}·{lse}² = {data} + {zterm} = {loss}"
    ),
    "loss_terms": "loss = sum of w·q·(-log p) = {loss}",
    "mean_note": (
        "(as a batch of one with reduction='mean', PyTorch's default, the loss is divided by the "
        "target's weight {w}: {mean})"
    ),
    "kind_l1": "L1",
    "kind_l2": "L2",
    "kind_elasticnet": "elastic net",
    "many_weights": "the model's {n} weights",
    "regularization": "regularization ({kind}, alpha = {alpha}, w = {ws}): {what} = {value}",
    "objective": "objective = loss term + regularization term = {loss} + {pen} = {obj}",
    # the reading (text, JSON and page)
    "read_confident": (
        "Right and confident: the model gives {name} p = {p}, so the loss is small ({loss}){end}"
    ),
    "read_confident_end_plain": "; it reaches 0 only at p = 1.",
    "read_confident_end": ".",
    "read_unsure": (
        "Right but unsure: {name} has the largest probability, yet only p = {p}, so the loss "
        "({loss}) is larger than a confident answer's; it falls as p rises toward 1."
    ),
    "read_wrong": (
        "Wrong: the model prefers {top} (p = {ptop}) and gives {name} only p = {p}, so the loss "
        "is large ({loss}); -log p grows without bound as p falls toward 0."
    ),
    "read_dist_plain": (
        "The target spreads its probability over the classes, so even a perfect prediction "
        "would cost its entropy H(q) = {h}; this one costs {loss}, {kl} more (the KL divergence "
        "from q to p), and its top class is {top} ({phrase})."
    ),
    "read_dist": (
        "The target spreads its probability over the classes; this prediction costs {loss}, and "
        "its top class is {top} ({phrase})."
    ),
    "verdict_confident": "right and confident",
    "verdict_unsure": "right but unsure",
    "verdict_wrong": "wrong: not the target's most likely class",
    # picture
    "fig_title": "Cross-entropy of one example: loss = {loss}",
    "fig_title_objective": "Cross-entropy of one example: loss = {loss}, objective = {obj}",
    "bars_target": "target: {name}",
    "bars_other": "other classes",
    "bars_dist": "target distribution q",
    "bars_pred": "predicted p",
    "bars_xlabel_scores": "class (score)",
    "bars_xlabel": "class",
    "bars_ylabel": "probability p = softmax(scores)",
    "bars_title": "Softmax: scores to probabilities",
    "curve_point": "{name}: p = {p}, -log p = {nlp}",
    "curve_confident": "right and confident:\nsmall loss",
    "curve_wrong": "wrong:\nlarge loss",
    "curve_xlabel": "p of the target class",
    "curve_xlabel_dist": "p of a class",
    "curve_ylabel": "loss -log p",
    "curve_title": "Cross-entropy: -log p on (0, 1]",
    "pen_l1": "L1: alpha·|w|",
    "pen_l2": "L2: alpha·½w²",
    "pen_elasticnet": "elastic net (l1_ratio {r})",
    "pen_points": "this model's weights",
    "pen_xlabel": "weight w",
    "pen_ylabel": "regularization term",
    "pen_title": "Regularization: {value}\nobjective = {loss} + {value} = {obj}",
    "image_title": "the example (true: {true},\npredicted: {pred})",
    # page
    "page_title": "crossent explain: the cross-entropy of one example",
    "page_h1": "The cross-entropy of one example, step by step",
    "page_lead": (
        "Move a score (slider or box), pick the target: softmax turns the scores into "
        "probabilities (after subtracting the largest score, so that exp cannot overflow: "
        "exp(10000) is inf), and the loss is -log p of the target class. Made by crossent explain."
    ),
    "page_lang": "language",
    "page_target": "target",
    "page_temperature": "temperature",
    "page_smoothing": "label smoothing",
    "page_given_dist": "the given distribution q",
    "page_fixed": "Fixed options:",
    "page_loss": "loss",
    "page_regularization": "regularization ({kind}, alpha {alpha}) = ",
    "page_objective": "; objective = loss + regularization = ",
    "page_z_title": "the scores the softmax sees: score / temperature, soft-capped",
    # the tutorial's figures
    "templates_title": "weight templates: row c of W as an image (red: evidence for class c)",
    "sweep_accuracy": "test accuracy",
    "sweep_zeros": "share of exact zeros in W",
    "sweep_xlabel": "alpha (strength of the penalty)",
    "curves_loss": "training objective (cross-entropy + penalty)",
    "curves_accuracy": "accuracy (solid: test, dotted: train)",
    "curves_xlabel": "epoch",
    "curves_train": "{name}, train",
    "case_confident": "right and confident",
    "case_unsure": "right but unsure",
    "case_wrong": "wrong",
}

_ZH: dict[str, str] = {
    "title": "逐步计算一个样本的交叉熵",
    "scores_line": "得分：{scores}；目标：{target}",
    "target_class": "{name}（第 {index} 类）",
    "target_dist": "概率分布 {dist}",
    "options_line": "选项：{options}",
    "list_sep": "；",
    "opt_weight": "类别权重 {v}",
    "opt_smoothing": "标签平滑 {v}",
    "opt_temperature": "温度 {v}",
    "opt_softcap": "软截断 {v}",
    "opt_zloss": "z-loss {v}",
    "how_temperature": "先除以温度 {t}",
    "how_softcap": "软截断为 z = {c}·tanh(z/{c})",
    "how_join": "，再",
    "step_transform": "{step}. 变换：得分{how}（z 列）。",
    "src_score": "得分",
    "src_z": " z 值",
    "step_shift": (
        "{step}. 平移：所有{src}都减去其中最大的 {m}。softmax 的结果不变，而 exp 不会溢出："
        "在 float64 里 exp(10000) 是 inf，但 exp(10000 - 10000) = 1。"
    ),
    "step_softmax": (
        "{step}. 取指数再归一化：p = exp(平移后) / 合计，合计 = {sum}；每个 p 都在 0 和 1 "
        "之间，加起来等于 1。"
    ),
    "step_loss_plain": "{step}. 损失：目标类别的 -log p；它的梯度是 p - y。",
    "step_loss": (
        "{step}. 损失：H(q, p) = 对所有类别求和 -w·q·log p（w·q·(-log p) 列）{zpart}；"
        "dloss/ds 是它的梯度。"
    ),
    "step_loss_z": "，再加上 z-loss {z}·lse²",
    "h_class": "类别",
    "h_score": "得分",
    "h_shifted": "平移后",
    "h_target": "目标",
    "h_smoothed": "q（平滑后）",
    "h_target_q": "目标 q",
    "h_grad_plain": "p - y",
    "h_grad": "dloss/ds",
    "row_sum": "合计",
    "loss_plain": "损失 = -log p({name}) = -log {p} = {loss}",
    "loss_underflow": (
        "（p({name}) 在 float64 里下溢成了 0，损失却是有限的：-log p = log(合计) - 平移后得分 "
        "= {log_sum} + {minus_shifted}，由 log_softmax 算出，从头到尾没有计算 log(0)。）"
    ),
    "loss_terms_z": (
        "损失 = w·q·(-log p) 之和 + z-loss·lse² = {data} + {z}·{lse}² = {data} + {zterm} = {loss}"
    ),
    "loss_terms": "损失 = w·q·(-log p) 之和 = {loss}",
    "mean_note": (
        "（按 PyTorch 的默认值 reduction='mean'，把它当作只有一个样本的批次时，损失要除以目标"
        "类别的权重 {w}：{mean}）"
    ),
    "kind_l1": "L1",
    "kind_l2": "L2",
    "kind_elasticnet": "弹性网络",
    "many_weights": "模型的 {n} 个权重",
    "regularization": "正则化项（{kind}，alpha = {alpha}，w = {ws}）：{what} = {value}",
    "objective": "目标函数 = 损失项 + 正则化项 = {loss} + {pen} = {obj}",
    "read_confident": "预测正确且有把握：模型给 {name} 的概率 p = {p}，所以损失很小（{loss}）{end}",
    "read_confident_end_plain": "；只有 p = 1 时损失才是 0。",
    "read_confident_end": "。",
    "read_unsure": (
        "预测正确但不够有把握：{name} 的概率最大，但也只有 p = {p}，所以损失（{loss}）比有把握"
        "的预测大；p 越接近 1，损失越小。"
    ),
    "read_wrong": (
        "预测错误：模型更倾向于 {top}（p = {ptop}），只给 {name} p = {p}，所以损失很大"
        "（{loss}）；p 越接近 0，-log p 越大，没有上限。"
    ),
    "read_dist_plain": (
        "目标把概率分给了多个类别，所以即使预测完全等于目标，也要付出它的熵 H(q) = {h}；"
        "这次预测的损失是 {loss}，多出 {kl}（从 q 到 p 的 KL 散度），概率最大的类别是 {top}"
        "（{phrase}）。"
    ),
    "read_dist": (
        "目标把概率分给了多个类别；这次预测的损失是 {loss}，概率最大的类别是 {top}（{phrase}）。"
    ),
    "verdict_confident": "预测正确且有把握",
    "verdict_unsure": "预测正确但不够有把握",
    "verdict_wrong": "预测错误：不是目标里概率最大的类别",
    "fig_title": "一个样本的交叉熵：损失 = {loss}",
    "fig_title_objective": "一个样本的交叉熵：损失 = {loss}，目标函数 = {obj}",
    "bars_target": "目标：{name}",
    "bars_other": "其他类别",
    "bars_dist": "目标分布 q",
    "bars_pred": "预测的 p",
    "bars_xlabel_scores": "类别（得分）",
    "bars_xlabel": "类别",
    "bars_ylabel": "概率 p = softmax(得分)",
    "bars_title": "softmax：从得分到概率",
    "curve_point": "{name}：p = {p}，-log p = {nlp}",
    "curve_confident": "正确且有把握：\n损失小",
    "curve_wrong": "预测错误：\n损失大",
    "curve_xlabel": "目标类别的 p",
    "curve_xlabel_dist": "某个类别的 p",
    "curve_ylabel": "损失 -log p",
    "curve_title": "交叉熵：(0, 1] 上的 -log p",
    "pen_l1": "L1：alpha·|w|",
    "pen_l2": "L2：alpha·½w²",
    "pen_elasticnet": "弹性网络（l1_ratio {r}）",
    "pen_points": "这个模型的权重",
    "pen_xlabel": "权重 w",
    "pen_ylabel": "正则化项",
    "pen_title": "正则化项：{value}\n目标函数 = {loss} + {value} = {obj}",
    "image_title": "样本（真实：{true}，\n预测：{pred}）",
    "page_title": "crossent explain：一个样本的交叉熵",
    "page_h1": "逐步计算一个样本的交叉熵",
    "page_lead": (
        "拖动滑块或直接输入得分，选择目标：softmax 把得分变成概率（先减去最大的得分，exp 就"
        "不会溢出：exp(10000) 是 inf），损失是目标类别的 -log p。由 crossent explain 生成。"
    ),
    "page_lang": "语言",
    "page_target": "目标",
    "page_temperature": "温度",
    "page_smoothing": "标签平滑",
    "page_given_dist": "给定的分布 q",
    "page_fixed": "固定的选项：",
    "page_loss": "损失",
    "page_regularization": "正则化项（{kind}，alpha {alpha}）= ",
    "page_objective": "；目标函数 = 损失 + 正则化项 = ",
    "page_z_title": "softmax 看到的得分：得分 / 温度，再软截断",
    "templates_title": "权重模板：把 W 的第 c 行画成图（红色：支持类别 c 的证据）",
    "sweep_accuracy": "测试准确率",
    "sweep_zeros": "W 中恰好为 0 的比例",
    "sweep_xlabel": "alpha（正则化强度）",
    "curves_loss": "训练目标函数（交叉熵 + 正则化项）",
    "curves_accuracy": "准确率（实线：测试集，点线：训练集）",
    "curves_xlabel": "轮次（epoch）",
    "curves_train": "{name}，训练集",
    "case_confident": "正确且有把握",
    "case_unsure": "正确但不够有把握",
    "case_wrong": "预测错误",
}

#: The message table of each language; English is the default.
MESSAGES: Mapping[str, Mapping[str, str]] = {"en": _EN, "zh": _ZH}

#: The languages, with their own names (for menus).
LANGS: Mapping[str, str] = {"en": "English", "zh": "中文"}

_FIELD = re.compile(r"\{(\w+)\}")


def check_lang(lang: str) -> str:
    """``lang`` if it has a message table, else a ValueError naming the argument."""
    if lang not in MESSAGES:
        raise ValueError(f"lang: expected one of {', '.join(map(repr, MESSAGES))}, got {lang!r}")
    return lang


def fill(template: str, args: Mapping[str, object]) -> str:
    """Replace each ``{name}`` in ``template`` by ``str(args[name])``.

    The page's script fills templates with the same rule (no format specifications, so a
    template reads the same in Python and in JavaScript).

    Examples
    --------
    >>> fill("loss = {loss}", {"loss": "0.408"})
    'loss = 0.408'
    """
    return _FIELD.sub(lambda m: str(args[m.group(1)]), template)


def message(lang: str, key: str, **args: object) -> str:
    """The message ``key`` in ``lang``, its fields filled from ``args``.

    Examples
    --------
    >>> message("en", "loss_terms", loss="0.408"), message("zh", "loss_terms", loss="0.408")
    ('loss = sum of w·q·(-log p) = 0.408', '损失 = w·q·(-log p) 之和 = 0.408')
    """
    return fill(MESSAGES[check_lang(lang)][key], args)
