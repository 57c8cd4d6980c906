"""Batching helpers shared by every model call: length-sorted batches and left / right padding.

Sorting sequences by length before cutting batches wastes less compute on padding; the order is a pure
function of the lengths (ties keep their input order), so batches, and hence results, never depend on timing.

    for batch in length_batches([len(x) for x in ids], batch_size=512):
        input_ids, mask = right_pad([ids[i] for i in batch], pad_id)
"""
from __future__ import annotations

import torch

from .checks import check_int


def length_batches(lengths: list[int], batch_size: int, weights: list[int] | None = None) -> list[list[int]]:
    """Indices sorted by length (ties by index), packed into batches of at most `batch_size` weight each.

    `weights` counts what one index costs in a batch (e.g. the samples that share one prompt's prefill);
    an index heavier than `batch_size` gets a batch of its own. With unit weights batches hold exactly
    `batch_size` indices, the last one the rest.
    """
    check_int("batch_size", batch_size)
    weights = weights if weights is not None else [1] * len(lengths)
    batches, cur, size = [], [], 0
    for i in sorted(range(len(lengths)), key=lambda i: (lengths[i], i)):
        if cur and size + weights[i] > batch_size:
            batches.append(cur)
            cur, size = [], 0
        cur.append(i)
        size += weights[i]
    if cur:
        batches.append(cur)
    return batches


def padded_groups(lengths: list[int], tokens: int) -> list[list[int]]:
    """Indices sorted by length (ties by index), cut into groups whose padded size (rows x longest row) stays within
    `tokens`; a row longer than `tokens` gets a group of its own."""
    check_int("tokens", tokens)
    groups, cur = [], []
    for i in sorted(range(len(lengths)), key=lambda i: (lengths[i], i)):
        if cur and (len(cur) + 1) * lengths[i] > tokens:
            groups.append(cur)
            cur = []
        cur.append(i)
    if cur:
        groups.append(cur)
    return groups


def cheapest_groups(lengths: list[int], overhead: int) -> list[list[int]]:
    """Indices sorted by length (ties by index), cut into consecutive groups that minimise the tokens computed: each
    group's rows times its longest row, plus `overhead` tokens for each group (what one more model call costs).

    A batch of search candidates' new steps (1 to 32 tokens, most under 10) padded to its longest is a third real
    tokens; cutting it wherever a cut saves more padding than a call costs keeps most of the rest. Cuts fall only
    between different lengths (exact minimum over those cuts, by dynamic programming over the distinct lengths)."""
    check_int("overhead", overhead, lo=0)
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    ends = [k + 1 for k in range(len(order)) if k + 1 == len(order) or lengths[order[k + 1]] != lengths[order[k]]]
    cost, cut = {0: 0}, {}
    for e in ends:  # the cheapest cost of the first e rows, with its last group's start
        longest = lengths[order[e - 1]]
        cost[e], cut[e] = min((cost[s] + (e - s) * longest + overhead, s) for s in [0] + ends if s < e)
    groups, e = [], len(order)
    while e:
        groups.append(order[cut[e]:e])
        e = cut[e]
    return groups[::-1]


def packed_rows(lengths: list[int], width: int) -> list[list[int]]:
    """Indices placed into rows of at most `width` tokens, longest first, each into the first row it fits
    (first-fit decreasing; ties by index), every index exactly once; a row longer than `width` gets a row of its own.

    Several sequences share a row when a training batch mixes lengths: the revision fine-tune's random batches of 32
    (10 to 488 tokens) padded to their longest are 28% real tokens, packed into rows as wide as their longest 93%."""
    check_int("width", width)
    rows, used = [], []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        r = next((r for r, u in enumerate(used) if u + lengths[i] <= width), None)
        if r is None:
            rows.append([])
            used.append(0)
            r = len(rows) - 1
        rows[r].append(i)
        used[r] += lengths[i]
    return rows


def _pad(ids: list[list[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, ids))
    x = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, row in enumerate(ids):
        cols = slice(width - len(row), width) if left else slice(0, len(row))
        x[i, cols] = torch.tensor(row, dtype=torch.long)
        mask[i, cols] = 1
    return x, mask


def left_pad(ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) with every row ending at the last column, as generation needs."""
    return _pad(ids, pad_id, left=True)


def right_pad(ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) with every row starting at column 0: positions then match an unpadded
    forward exactly, which scoring and training a verifier need."""
    return _pad(ids, pad_id, left=False)
