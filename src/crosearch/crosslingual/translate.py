"""Batched translators (the policy model few-shot, a HF seq2seq model, identity) and a persistent cache.

Every translator implements ``translate(texts, src_langs, tgt_lang) -> list[str]``.
Wrap a backend in :class:`CachedTranslator` so repeated evaluation and training
never translate the same text twice: the cache is an sqlite file in WAL mode,
which several processes (data-parallel workers, a server and an evaluation) may
share safely.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import regex

from crosearch.crosslingual.languages import FEW_SHOT, NLLB_CODES, iso639_3, language_name
from crosearch.errors import CrosearchError
from crosearch.progress import track


@runtime_checkable
class Translator(Protocol):
    """Batch translation into one target language; sources may differ per text."""

    backend_id: str
    model_id: str

    def translate(
        self, texts: Sequence[str], src_langs: Sequence[str], tgt_lang: str, *, max_new_tokens: int | None = None
    ) -> list[str]: ...


def _check_lengths(texts: Sequence[str], src_langs: Sequence[str]) -> None:
    if len(texts) != len(src_langs):
        raise CrosearchError(f"translate: {len(texts)} texts but {len(src_langs)} source languages")


def _untranslated(texts: Sequence[str], src_langs: Sequence[str], tgt_lang: str) -> list[int]:
    """Indices of the texts that need translating: blank ones and those already in ``tgt_lang`` stay as they are."""
    _check_lengths(texts, src_langs)
    return [i for i, (t, s) in enumerate(zip(texts, src_langs)) if t.strip() and s != tgt_lang]


# --------------------------------------------------------------------------- output checks

# A unit of 2-40 characters holding a letter, repeated three times in a row
# ("wurde wurde wurde", "的的的的的的"); units without letters are ignored so that
# numbers like 1000000 do not count as loops.
_UNIT_RE = regex.compile(r"(.{2,40}?)\1{2,}", regex.DOTALL)
_LETTER_RE = regex.compile(r"\p{L}")
_WORD_RE = regex.compile(r"\w+")


def is_repetitive(text: str) -> bool:
    """True when generated text has fallen into a repetition loop."""
    for match in _UNIT_RE.finditer(text):
        if _LETTER_RE.search(match.group(1)):
            return True
    words = [w.lower() for w in _WORD_RE.findall(text)]
    return len(words) >= 8 and len(set(words)) / len(words) < 0.35


def _normalise(text: str) -> str:
    return " ".join(_WORD_RE.findall(text.lower()))


def strip_leaked_examples(output: str, tgt_lang: str, src_lang: str | None = None) -> str:
    """Remove few-shot example sentences that a small model copies into its output."""
    leaked = list(FEW_SHOT.get(tgt_lang, ())) + list(FEW_SHOT.get(src_lang or "", ()))
    cleaned = output
    for example in leaked:
        if example in cleaned:
            cleaned = cleaned.replace(example, " ")
    cleaned = " ".join(cleaned.split())
    if _normalise(cleaned) in {_normalise(e) for e in leaked}:
        return ""
    return cleaned


def clean_generation(raw: str, source: str, src_lang: str, tgt_lang: str) -> tuple[str, str | None]:
    """Cut at the first newline, strip leaked examples, reject loops.

    Returns ``(text, problem)``: the source text and a reason when the output is unusable.
    """
    text = raw.split("\n", 1)[0].strip()
    text = strip_leaked_examples(text, tgt_lang, src_lang)
    if not text:
        return source, "empty"
    if is_repetitive(text) and not is_repetitive(source):
        return source, "loop"
    return text, None


# --------------------------------------------------------------------------- backends


class IdentityTranslator:
    """``none``: returns the texts unchanged (multilingual dense retrieval needs no translation)."""

    backend_id = "none"
    model_id = "identity"

    def __init__(self) -> None:
        self.calls = 0

    def translate(
        self, texts: Sequence[str], src_langs: Sequence[str], tgt_lang: str, *, max_new_tokens: int | None = None
    ) -> list[str]:
        _check_lengths(texts, src_langs)
        self.calls += 1
        return list(texts)


def build_prompt(text: str, src_lang: str, tgt_lang: str) -> str:
    """Few-shot translation prompt for a base causal LM; the answer is the rest of the last line."""
    src_name, tgt_name = language_name(src_lang), language_name(tgt_lang)
    src_examples = FEW_SHOT.get(src_lang) or FEW_SHOT["en"]
    if src_lang not in FEW_SHOT:
        src_name_examples = language_name("en")
    else:
        src_name_examples = src_name
    lines = [f"Translate from {src_name} to {tgt_name}.", ""]
    tgt_examples = FEW_SHOT.get(tgt_lang)
    if tgt_examples is not None:
        for src_ex, tgt_ex in zip(src_examples, tgt_examples):
            lines += [f"{src_name_examples}: {src_ex}", f"{tgt_name}: {tgt_ex}", ""]
    lines += [f"{src_name}: {' '.join(text.split())}", f"{tgt_name}:"]
    return "\n".join(lines)


def newline_token_ids(tokenizer: Any) -> list[int]:
    """Ids of every vocabulary token that contains a line break.

    SentencePiece vocabularies spell it as a raw newline (or the byte token ``<0x0A>``),
    byte-level BPE as ``Ċ``.
    """
    return sorted(i for t, i in tokenizer.get_vocab().items() if "\n" in t or "Ċ" in t or t == "<0x0A>")


def _newline_stop(tokenizer: Any, device: Any) -> Any:
    """A stopping criterion that ends each row at its first newline token.

    transformers' ``stop_strings`` matches token/string overlaps over the whole
    vocabulary (262k tokens for Gemma) on every call: 8.6 s against 5.2 s for one
    batch of 8 prompts x 20 tokens with the tiny test model, warm. The newline ids
    can be listed once instead.
    """
    import torch
    from transformers import StoppingCriteria

    ids = torch.tensor(newline_token_ids(tokenizer), dtype=torch.long, device=device)

    class NewlineStop(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.isin(input_ids[:, -1], ids)

    return NewlineStop()


class PolicyTranslator:
    """``policy``: the policy LM itself, prompted few-shot, greedy, without gradients.

    Outputs are cut at the first newline, capped in length, stripped of copied
    prompt examples, and replaced by the source text when they loop.
    """

    backend_id = "policy"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        model_id: str = "policy",
        batch_size: int = 8,
        max_new_tokens: int = 48,
        show_progress: bool = False,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.show_progress = show_progress
        self.calls = 0
        self.texts_translated = 0
        self.fallbacks: dict[str, int] = {"empty": 0, "loop": 0}
        self.seconds = 0.0  # wall time spent generating, for cost reports
        self._stop: Any = None

    def translate(
        self, texts: Sequence[str], src_langs: Sequence[str], tgt_lang: str, *, max_new_tokens: int | None = None
    ) -> list[str]:
        import torch

        todo = _untranslated(texts, src_langs, tgt_lang)
        self.calls += 1
        cap = max_new_tokens or self.max_new_tokens
        out: list[str] = list(texts)
        tok = self.tokenizer
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        # Left padding keeps every prompt's last token at the end, where generation continues.
        previous_side = tok.padding_side
        tok.padding_side = "left"
        lengths = {i: len(tok(texts[i], add_special_tokens=False)["input_ids"]) for i in todo}
        # Sorting by length makes batches of similar length: less padding, tighter caps.
        todo.sort(key=lambda i: lengths[i])
        batches = [todo[j : j + self.batch_size] for j in range(0, len(todo), self.batch_size)]
        device = next(self.model.parameters()).device
        from transformers import StoppingCriteriaList

        if self._stop is None:
            self._stop = _newline_stop(tok, device)
        stop = self._stop
        iterator = track(batches, f"translate -> {tgt_lang}", enabled=self.show_progress and len(batches) > 1)
        started = time.perf_counter()
        try:
            for batch in iterator:
                prompts = [build_prompt(texts[i], src_langs[i], tgt_lang) for i in batch]
                enc = tok(prompts, return_tensors="pt", padding=True).to(device)
                # Translations run about as long as their source; scripts differ in token
                # density, so allow twice the source length plus slack, never beyond the cap.
                budget = min(cap, 2 * max(lengths[i] for i in batch) + 8)
                with torch.inference_mode():
                    generated = self.model.generate(
                        **enc,
                        max_new_tokens=budget,
                        do_sample=False,
                        num_beams=1,
                        stopping_criteria=StoppingCriteriaList([stop]),
                        pad_token_id=tok.pad_token_id,
                    )
                new_tokens = generated[:, enc["input_ids"].shape[1] :]
                for row, i in enumerate(batch):
                    raw = tok.decode(new_tokens[row], skip_special_tokens=True)
                    text, problem = clean_generation(raw, texts[i], src_langs[i], tgt_lang)
                    if problem:
                        self.fallbacks[problem] += 1
                    out[i] = text
                    self.texts_translated += 1
        finally:
            tok.padding_side = previous_side
            self.seconds += time.perf_counter() - started
        return out


def seq2seq_family(tokenizer: Any) -> str:
    """Which language-code convention a seq2seq translation tokenizer follows: nllb, m2m100, marian or plain."""
    name = type(tokenizer).__name__.lower()
    if "nllb" in name:
        return "nllb"
    if "m2m100" in name:
        return "m2m100"
    if "marian" in name:
        return "marian"
    return "plain"


def seq2seq_lang_code(family: str, lang: str) -> str:
    """The language code a seq2seq family expects for an ISO 639-1 code (``de`` -> ``deu_Latn`` for NLLB)."""
    if family == "nllb":
        if lang in NLLB_CODES:
            return NLLB_CODES[lang]
        if "_" in lang:  # already a FLORES-200 code
            return lang
        raise CrosearchError(f"no NLLB language code known for '{lang}'; pass a FLORES-200 code such as 'deu_Latn'")
    if family == "marian":
        return iso639_3(lang)
    return lang


class Seq2SeqTranslator:
    """``hf-seq2seq``: a Hugging Face translation model (NLLB, M2M100, Marian) by id or local path."""

    backend_id = "hf-seq2seq"

    def __init__(
        self,
        model_name: str,
        *,
        device: str = "cpu",
        batch_size: int = 8,
        max_new_tokens: int = 192,
        show_progress: bool = False,
    ) -> None:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_name)
            self.model = AutoModelForSeq2SeqLM.from_pretrained(model_name)
        except (OSError, ValueError) as exc:
            raise CrosearchError(f"cannot load seq2seq translation model '{model_name}': {exc}") from None
        self.model.to(device).eval()
        self.model_id = model_name
        self.family = seq2seq_family(self.tokenizer)
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.show_progress = show_progress
        self.calls = 0
        self.texts_translated = 0

    def _encode(self, texts: list[str], src: str, tgt: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Tokenise one same-source batch; returns (model inputs, extra generate kwargs)."""
        tok = self.tokenizer
        gen_kwargs: dict[str, Any] = {}
        if self.family in ("nllb", "m2m100"):
            tok.src_lang = seq2seq_lang_code(self.family, src)
            tgt_code = seq2seq_lang_code(self.family, tgt)
            if self.family == "m2m100":
                gen_kwargs["forced_bos_token_id"] = tok.get_lang_id(tgt_code)
            else:
                gen_kwargs["forced_bos_token_id"] = tok.convert_tokens_to_ids(tgt_code)
        else:
            # Multi-target Marian models pick the target with a >>xxx<< prefix token
            # (ISO 639-3, or the 2-letter code in some models); single-pair models have none.
            vocab = tok.get_vocab()
            for tag in (f">>{seq2seq_lang_code('marian', tgt)}<<", f">>{tgt}<<"):
                if tag in vocab:
                    texts = [f"{tag} {t}" for t in texts]
                    break
        enc = tok(texts, return_tensors="pt", padding=True, truncation=True)
        enc.pop("token_type_ids", None)
        return dict(enc), gen_kwargs

    def translate(
        self, texts: Sequence[str], src_langs: Sequence[str], tgt_lang: str, *, max_new_tokens: int | None = None
    ) -> list[str]:
        import torch

        todo = _untranslated(texts, src_langs, tgt_lang)
        self.calls += 1
        out = list(texts)
        by_src: dict[str, list[int]] = {}
        for i in todo:
            by_src.setdefault(src_langs[i], []).append(i)
        device = next(self.model.parameters()).device
        for src, idx in by_src.items():
            for j in range(0, len(idx), self.batch_size):
                batch = idx[j : j + self.batch_size]
                enc, gen_kwargs = self._encode([" ".join(texts[i].split()) for i in batch], src, tgt_lang)
                enc = {k: v.to(device) for k, v in enc.items()}
                with torch.inference_mode():
                    generated = self.model.generate(
                        **enc,
                        max_new_tokens=max_new_tokens or self.max_new_tokens,
                        num_beams=1,
                        do_sample=False,
                        **gen_kwargs,
                    )
                decoded = self.tokenizer.batch_decode(generated, skip_special_tokens=True)
                for i, raw in zip(batch, decoded):
                    text = " ".join(raw.split())
                    out[i] = texts[i] if (not text or (is_repetitive(text) and not is_repetitive(texts[i]))) else text
                    self.texts_translated += 1
        return out


# --------------------------------------------------------------------------- cache


def default_cache_path() -> Path:
    """The per-user translation cache file."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("crosearch")) / "translations.sqlite"


class TranslationCache:
    """Persistent ``(backend, model, src, tgt, text) -> translation`` store in sqlite (WAL mode).

    WAL lets readers proceed while one process writes; a busy timeout makes
    concurrent writers wait instead of failing. Connections are opened per
    process (and per thread), so the object survives ``fork``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self.hits = 0
        self.misses = 0
        with self._connect() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS translations ("
                " key TEXT PRIMARY KEY, backend TEXT, model TEXT, src TEXT, tgt TEXT,"
                " source TEXT, translation TEXT, created REAL)"
            )

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            try:
                conn = sqlite3.connect(self.path, timeout=60.0)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.DatabaseError as exc:
                raise CrosearchError(f"translation cache {self.path}: not a usable sqlite database ({exc})") from None
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @staticmethod
    def key(backend: str, model: str, src: str, tgt: str, text: str) -> str:
        payload = "\x1f".join((backend, model, src, tgt, text))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        conn = self._connect()
        unique = list(dict.fromkeys(keys))
        for j in range(0, len(unique), 500):  # sqlite limits bound parameters per statement
            chunk = unique[j : j + 500]
            rows = conn.execute(
                f"SELECT key, translation FROM translations WHERE key IN ({','.join('?' * len(chunk))})", chunk
            ).fetchall()
            found.update(rows)
        return found

    def put_many(self, rows: Sequence[tuple[str, str, str, str, str, str, str]]) -> None:
        """Store ``(key, backend, model, src, tgt, source, translation)`` rows in one transaction."""
        if not rows:
            return
        conn = self._connect()
        now = time.time()
        with conn:
            conn.executemany(
                "INSERT OR REPLACE INTO translations (key, backend, model, src, tgt, source, translation, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(*row, now) for row in rows],
            )

    def __len__(self) -> int:
        return self._connect().execute("SELECT COUNT(*) FROM translations").fetchone()[0]


class CachedTranslator:
    """A translator that asks its backend only for texts the cache has not seen."""

    def __init__(self, backend: Translator, cache: TranslationCache | None) -> None:
        self.backend = backend
        self.cache = cache
        self.backend_id = backend.backend_id
        self.model_id = backend.model_id

    def translate(
        self, texts: Sequence[str], src_langs: Sequence[str], tgt_lang: str, *, max_new_tokens: int | None = None
    ) -> list[str]:
        out = list(texts)
        pending: dict[str, list[int]] = {}
        for i in _untranslated(texts, src_langs, tgt_lang):
            key = TranslationCache.key(self.backend_id, self.model_id, src_langs[i], tgt_lang, texts[i])
            pending.setdefault(key, []).append(i)
        if not pending:
            return out
        found = self.cache.get_many(list(pending)) if self.cache is not None else {}
        if self.cache is not None:
            self.cache.hits += sum(len(pending[k]) for k in found)
        for key, translation in found.items():
            for i in pending.pop(key):
                out[i] = translation
        if pending:
            keys = list(pending)
            firsts = [pending[k][0] for k in keys]
            if self.cache is not None:
                self.cache.misses += len(keys)
            translated = self.backend.translate(
                [texts[i] for i in firsts], [src_langs[i] for i in firsts], tgt_lang, max_new_tokens=max_new_tokens
            )
            rows = []
            for key, i, translation in zip(keys, firsts, translated):
                for j in pending[key]:
                    out[j] = translation
                rows.append((key, self.backend_id, self.model_id, src_langs[i], tgt_lang, texts[i], translation))
            if self.cache is not None:
                self.cache.put_many(rows)
        return out
