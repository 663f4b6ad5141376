"""From a dataset version in the store to token tensors: examples, masking, packing, batches.

The trainer reads a version's splits through :class:`corpusmill.store.Version`, never loose files.
Every row that does not become an example is counted by reason (``data_accounting`` in
run.json), as in the pipeline: nothing disappears silently.

Label conventions (causal-lm): ``labels`` has the length of ``input_ids``; ``-100`` marks a token
that is context only. The model predicts token ``i`` from tokens ``< i``, so the loss uses
``logits[:, :-1]`` against ``labels[:, 1:]``. EOS is appended to every example and is always a
target: labels are built from the segments, never from ``input_ids == pad_token_id`` (with
``pad = eos`` that classic shortcut silently stops the model from learning to stop).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import orjson
import pyarrow as pa
import xxhash

from corpusmill import schema as S
from corpusmill.errors import CorpusmillError
from corpusmill.store import Version

IGNORE = -100


class DataError(CorpusmillError):
    """The version's data cannot be used for the asked task."""


# ----------------------------------------------------------------------------- rows


def stable_sample(ids: list[str], n: int, seed: int) -> np.ndarray:
    """Indices of at most ``n`` rows, chosen by a hash of (seed, row id), in their original order.

    Keyed on ids rather than positions, so a refreshed version keeps sampling the rows it shares
    with the previous one.
    """
    if n <= 0 or n >= len(ids):
        return np.arange(len(ids))
    keys = np.fromiter((xxhash.xxh64_intdigest(i.encode("utf-8"), seed=seed) for i in ids), dtype=np.uint64, count=len(ids))
    return np.sort(np.argsort(keys, kind="stable")[:n])


def read_rows(version: Version, split: str, columns: list[str], max_rows: int, seed: int) -> pa.Table:
    """Columns of one split (``id`` always included), sampled to ``max_rows`` when > 0."""
    available = set(version.schema().names)
    wanted = [S.ID] + [c for c in columns if c != S.ID and c in available]
    table = version.read_split(split, columns=wanted)
    idx = stable_sample(table.column(S.ID).to_pylist(), max_rows, seed)
    return table.take(pa.array(idx)) if len(idx) != table.num_rows else table


def label_values(table: pa.Table, label_field: str) -> list[str | None]:
    """The label of each row as a string, from a column or from ``meta.KEY``."""
    if label_field.startswith("meta."):
        key = label_field[len("meta."):]
        out = []
        for m in table.column(S.META).to_pylist():
            v = orjson.loads(m).get(key) if m else None
            out.append(None if v is None else str(v))
        return out
    return [None if v is None else str(v) for v in table.column(label_field).to_pylist()]


def needed_columns(version: Version, task: str, fmt: str, label_field: str) -> tuple[list[str], str]:
    """The columns a task reads from this version, and the causal-lm format in effect."""
    names = set(version.schema().names)
    if task == "classification":
        col = S.META if label_field.startswith("meta.") else label_field
        if col not in names:
            raise DataError(f"{version.ref} has no column '{col}' for label_field '{label_field}'; "
                            f"columns: {', '.join(sorted(names))}. Map one with label_field: in the pipeline's inputs, "
                            "or use meta.KEY for a field kept in meta")
        return [S.TEXT, col], "classification"
    if fmt == "auto":
        fmt = "messages" if S.MESSAGES in names else "prompt_response" if {S.PROMPT, S.RESPONSE} <= names else "text"
    need = {"text": [S.TEXT], "prompt_response": [S.PROMPT, S.RESPONSE], "messages": [S.MESSAGES]}[fmt]
    missing = [c for c in need if c not in names]
    if missing:
        raise DataError(f"format '{fmt}' needs column(s) {', '.join(missing)}, which {version.ref} does not have "
                        f"(columns: {', '.join(sorted(names))})")
    if fmt == "prompt_response" and S.SYSTEM in names:  # a row's system prompt is written before its prompt
        need = [S.SYSTEM, *need]
    return need, fmt


# ----------------------------------------------------------------------------- examples


@dataclass
class Examples:
    """Tokenized rows of one split. ``labels`` holds per-token arrays (causal-lm) or class ids."""

    ids: list[str]
    input_ids: list[np.ndarray]
    labels: list[np.ndarray] | np.ndarray
    #: rows that did not become examples, by reason; rows cut at max_seq_len
    accounting: Counter = field(default_factory=Counter)
    #: causal-lm prompt/response only: the prompt as written and the reference response (for generation)
    prompts: list[str] | None = None
    references: list[str] | None = None
    #: packed rows: per-token example index inside the row (position ids restart at each change)
    segments: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))

    def target_count(self) -> int:
        if isinstance(self.labels, np.ndarray) and self.labels.ndim == 1 and self.labels.dtype != object:
            return len(self.labels)
        return int(sum(int((y[1:] != IGNORE).sum()) for y in self.labels))


def _encode(tokenizer, texts: list[str], special: bool) -> list[list[int]]:
    if not texts:
        return []
    return tokenizer(texts, add_special_tokens=special, truncation=False)["input_ids"]


def _eos_id(tokenizer) -> int:
    if tokenizer.eos_token_id is None:
        raise DataError("the tokenizer has no EOS token; causal-lm training appends EOS to every example "
                        "so the model learns to stop. Set tokenizer.eos_token in the model folder")
    return int(tokenizer.eos_token_id)


def _cut(ids: np.ndarray, labels: np.ndarray, max_len: int, acc: Counter) -> tuple[np.ndarray, np.ndarray]:
    if len(ids) > max_len:
        acc["truncated"] += 1
        return ids[:max_len], labels[:max_len]
    return ids, labels


def classification_examples(tokenizer, table: pa.Table, label_field: str, label_ids: dict[str, int],
                            max_len: int) -> Examples:
    """Token ids of ``text`` and a class id per row; rows without a label or with an unseen one are counted."""
    acc: Counter = Counter()
    labels = label_values(table, label_field)
    texts = table.column(S.TEXT).to_pylist()
    keep = []
    for i, y in enumerate(labels):
        if y is None:
            acc["no_label"] += 1
        elif y not in label_ids:
            acc["label_not_in_train"] += 1
        else:
            keep.append(i)
    enc = _encode(tokenizer, [texts[i] for i in keep], special=True)
    closing = tokenizer.sep_token_id
    ids_out, y_out = [], []
    for row, i in zip(enc, keep):
        if len(row) > max_len:
            acc["truncated"] += 1
            # an encoder input keeps its closing [SEP] when cut
            row = row[: max_len - 1] + row[-1:] if closing is not None and row[-1] == closing else row[:max_len]
        ids_out.append(np.asarray(row, dtype=np.int64))
        y_out.append(label_ids[labels[i]])
    row_ids = table.column(S.ID).to_pylist()
    return Examples([row_ids[i] for i in keep], ids_out, np.asarray(y_out, dtype=np.int64), acc)


def text_examples(tokenizer, table: pa.Table, max_len: int) -> Examples:
    """Plain text: every token is a target, EOS appended."""
    eos = _eos_id(tokenizer)
    acc: Counter = Counter()
    ids_out, y_out = [], []
    for row in _encode(tokenizer, table.column(S.TEXT).to_pylist(), special=True):
        ids = np.asarray(row + [eos], dtype=np.int64)
        ids, y = _cut(ids, ids.copy(), max_len, acc)
        ids_out.append(ids)
        y_out.append(y)
    return Examples(table.column(S.ID).to_pylist(), ids_out, y_out, acc)


def prompt_response_examples(tokenizer, table: pa.Table, template: str, max_len: int) -> Examples:
    """Prompt and response tokenized separately and concatenated, so the mask boundary is exact:
    prompt tokens are context (-100), response tokens and the appended EOS are targets.

    The prompt is written by :func:`corpusmill.datasets.written_prompts` (the template, and the
    row's system prompt if it has one), the function ``datasets export --format trl`` uses too."""
    from corpusmill.datasets import written_prompts

    eos = _eos_id(tokenizer)
    acc: Counter = Counter()
    prompts = written_prompts(table, template).to_pylist()
    responses = [r or "" for r in table.column(S.RESPONSE).to_pylist()]
    p_enc = _encode(tokenizer, prompts, special=True)
    r_enc = _encode(tokenizer, responses, special=False)
    ids_out, y_out = [], []
    for p, r in zip(p_enc, r_enc):
        ids = np.asarray(p + r + [eos], dtype=np.int64)
        y = ids.copy()
        y[: len(p)] = IGNORE
        ids, y = _cut(ids, y, max_len, acc)
        if not (y[1:] != IGNORE).any():
            acc["no_target_tokens"] += 1
        ids_out.append(ids)
        y_out.append(y)
    return Examples(table.column(S.ID).to_pylist(), ids_out, y_out, acc, prompts=prompts, references=responses)


def chat_segments(tokenizer, messages: list[dict], assistant_turns: str = "all") -> list[tuple[str, bool]]:
    """A conversation as (text, is_target) pieces through the tokenizer's chat template.

    Assistant turns are targets (``assistant_turns``: ``all`` of them, or only the ``last``; the
    others are then context); everything the template writes around them (role headers, the
    generation prompt) is context. Pieces come from rendering growing prefixes of the
    conversation, so they concatenate to exactly the full rendering.
    """
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
    if not getattr(tokenizer, "chat_template", None):
        raise DataError("format 'messages' needs a tokenizer with a chat template (tokenizer.chat_template is empty)")

    def render(msgs, gen):
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)

    pieces: list[tuple[str, bool]] = []
    done = ""
    for i, m in enumerate(messages):
        if m["role"] == "assistant":
            head = render(messages[:i], True)
            if not head.startswith(done):
                raise DataError("the chat template does not render a conversation as a prefix of its continuation; "
                                "response-only masking cannot find the assistant turns")
            pieces.append((head[len(done):], False))
            done = head
        full = render(messages[: i + 1], False)
        if not full.startswith(done):
            raise DataError("the chat template does not render a conversation as a prefix of its continuation; "
                            "response-only masking cannot find the assistant turns")
        pieces.append((full[len(done):], m["role"] == "assistant" and (assistant_turns == "all" or i == last)))
        done = full
    return [(t, target) for t, target in pieces if t]


def messages_examples(tokenizer, table: pa.Table, max_len: int, assistant_turns: str = "all") -> Examples:
    """Chat messages: the loss covers the assistant turns (and the template's end-of-turn tokens
    after them) and EOS: every assistant turn (``assistant_turns="all"``) or only the last one."""
    eos = _eos_id(tokenizer)
    acc: Counter = Counter()
    ids_out, y_out, keep_ids = [], [], []
    from corpusmill.sft import plain_messages

    for rid, msgs in zip(table.column(S.ID).to_pylist(), table.column(S.MESSAGES).to_pylist()):
        msgs = plain_messages(msgs)
        if not msgs or not any(m["role"] == "assistant" for m in msgs):
            acc["no_assistant_turn"] += 1
            continue
        ids: list[int] = []
        targets: list[bool] = []
        for text, is_target in chat_segments(tokenizer, msgs, assistant_turns):
            piece = tokenizer(text, add_special_tokens=False)["input_ids"]
            ids += piece
            targets += [is_target] * len(piece)
        if not ids or ids[-1] != eos:
            ids.append(eos)
            targets.append(True)
        targets[-1] = True  # the final EOS is always learned, even when the template wrote it
        arr = np.asarray(ids, dtype=np.int64)
        y = np.where(np.asarray(targets), arr, IGNORE)
        arr, y = _cut(arr, y, max_len, acc)
        if not (y[1:] != IGNORE).any():
            acc["no_target_tokens"] += 1
        ids_out.append(arr)
        y_out.append(y)
        keep_ids.append(rid)
    return Examples(keep_ids, ids_out, y_out, acc)


def data_warnings(accounting: dict[str, dict], max_len: int) -> list[str]:
    """Console warnings, with counts, for what the per-split accounting (run.json's
    ``data_accounting``) says about rows that teach less than they seem to: rows cut at
    ``max_len``, rows left with no target token after the cut, conversations without an
    assistant turn."""
    out = []
    for split, acc in accounting.items():
        rows = acc.get("rows_read", 0)
        if acc.get("no_target_tokens"):
            out.append(f"{split}: {acc['no_target_tokens']:,} of {rows:,} rows have no target token left after the cut "
                       f"at max_seq_len {max_len} (the response starts past it): they add nothing to the loss. Raise "
                       "max_seq_len ('corpusmill datasets stats REF --tokenizer MODEL' recommends one) or drop long prompts")
        if acc.get("truncated"):
            out.append(f"{split}: {acc['truncated']:,} of {rows:,} rows are longer than max_seq_len {max_len} and were "
                       "cut on the right: the model never sees their end (nor learns to stop there)")
        if acc.get("no_assistant_turn"):
            out.append(f"{split}: {acc['no_assistant_turn']:,} of {rows:,} conversations have no assistant turn and "
                       "were left out")
    return out


def pack(ex: Examples, max_len: int, seed: int) -> Examples:
    """Concatenate examples (in a seeded order) into rows of at most ``max_len`` tokens.

    An example never straddles two rows; each row records which example every token belongs
    to, from which the collator builds position ids that restart at every example (attention
    is then block-diagonal, see :func:`corpusmill.train.modeling.check_packing`). The first
    token of each example is never a target: it would be predicted from the previous example.
    """
    order = np.random.default_rng([seed, 7]).permutation(len(ex))
    rows_ids, rows_y, rows_seg, names = [], [], [], []
    cur_ids: list[np.ndarray] = []
    cur_y: list[np.ndarray] = []
    cur_seg: list[np.ndarray] = []
    used = 0

    def flush():
        nonlocal cur_ids, cur_y, cur_seg, used
        if cur_ids:
            rows_ids.append(np.concatenate(cur_ids))
            rows_y.append(np.concatenate(cur_y))
            rows_seg.append(np.concatenate(cur_seg))
            names.append(f"packed-{len(rows_ids) - 1}")
        cur_ids, cur_y, cur_seg, used = [], [], [], 0

    for k in order:
        ids, y = ex.input_ids[k], ex.labels[k].copy()
        y[0] = IGNORE
        if used + len(ids) > max_len:
            flush()
        cur_ids.append(ids)
        cur_y.append(y)
        cur_seg.append(np.full(len(ids), len(cur_seg), dtype=np.int64))
        used += len(ids)
    flush()
    acc = Counter(ex.accounting)
    acc["packed_examples"] = len(ex)
    return Examples(names, rows_ids, rows_y, acc, segments=rows_seg)


# ----------------------------------------------------------------------------- batches


@dataclass
class Batch:
    input_ids: np.ndarray       # (B, T) int64
    attention_mask: np.ndarray  # (B, T) int64; 1 = real token
    labels: np.ndarray          # (B, T) for causal-lm, (B,) for classification
    position_ids: np.ndarray | None  # packed rows only
    row_ids: list[str]
    #: tokens that contribute to the loss: next-token targets (causal-lm) or rows (classification)
    n_targets: int
    #: non-padding input tokens: what tokens/s counts
    n_tokens: int

    def to_torch(self, device):
        import torch

        out = {"input_ids": torch.from_numpy(self.input_ids).to(device),
               "labels": torch.from_numpy(self.labels).to(device)}
        if self.position_ids is not None:
            # packed: no 2-D mask, so the model derives block-diagonal attention from the positions
            out["position_ids"] = torch.from_numpy(self.position_ids).to(device)
        else:
            out["attention_mask"] = torch.from_numpy(self.attention_mask).to(device)
        return out


def collate(ex: Examples, idx, pad_id: int, causal: bool) -> Batch:
    """Right-pad the rows ``idx`` to the longest of them."""
    idx = list(idx)
    width = max(len(ex.input_ids[i]) for i in idx)
    n = len(idx)
    ids = np.full((n, width), pad_id, dtype=np.int64)
    mask = np.zeros((n, width), dtype=np.int64)
    labels = np.full((n, width), IGNORE, dtype=np.int64) if causal else np.asarray(ex.labels)[idx]
    pos = np.zeros((n, width), dtype=np.int64) if ex.segments is not None else None
    for r, i in enumerate(idx):
        row = ex.input_ids[i]
        ids[r, : len(row)] = row
        mask[r, : len(row)] = 1
        if causal:
            labels[r, : len(row)] = ex.labels[i]
        if pos is not None:
            seg = ex.segments[i]
            starts = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
            p = np.arange(len(seg)) - np.repeat(starts, np.diff(np.r_[starts, len(seg)]))
            pos[r, : len(row)] = p
            if width > len(row):  # padding continues counting, so it does not start a new sequence
                pos[r, len(row):] = np.arange(p[-1] + 1, p[-1] + 1 + width - len(row))
    n_targets = int((labels[:, 1:] != IGNORE).sum()) if causal else n
    return Batch(ids, mask, labels, pos, [ex.ids[i] for i in idx], n_targets, int(mask.sum()))


class BatchOrder:
    """The micro-batches of every epoch, deterministic from (seed, epoch) and resumable by position.

    Epoch ``e`` visits the rows in ``permutation(seed, e)``; under DDP each rank takes every
    ``world``-th row of it (as torch's DistributedSampler, padded by wrapping so every rank has
    as many batches). Position ``k`` (micro-batches already consumed) is all a checkpoint needs.
    """

    def __init__(self, n_rows: int, batch_size: int, seed: int, rank: int = 0, world: int = 1, shuffle: bool = True):
        if n_rows == 0:
            raise DataError("no training rows")
        self.n, self.bs, self.seed, self.rank, self.world, self.shuffle = n_rows, batch_size, seed, rank, world, shuffle
        self.per_rank = -(-n_rows // world)
        self.batches_per_epoch = -(-self.per_rank // batch_size)
        self._epoch = -1
        self._rows: np.ndarray | None = None

    def _epoch_rows(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.n) if self.shuffle else np.arange(self.n)
            padded = np.resize(order, self.per_rank * self.world)  # wraps around, like DistributedSampler
            self._rows, self._epoch = padded[self.rank :: self.world], epoch
        return self._rows

    def batch(self, k: int) -> np.ndarray:
        """Row indices of micro-batch ``k`` (counted from the start of training)."""
        epoch, b = divmod(k, self.batches_per_epoch)
        return self._epoch_rows(epoch)[b * self.bs : (b + 1) * self.bs]
