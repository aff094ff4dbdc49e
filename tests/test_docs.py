"""Docs that cannot drift: snippets, quoted defaults, worked numbers and the package map, checked against the code."""

import ast
import doctest
import io
import re
import tokenize
from dataclasses import fields

import pytest

import minilab
from minilab.checks import shown_default
from minilab.generation.sampling import SamplingConfig
from minilab.model.config import ModelConfig
from minilab.training.config import TrainConfig
from tests.conftest import ROOT

DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]
FIELDS: dict[str, list] = {}  # a name may be a setting of two configs: --seed of train and of generate
for _cls in (TrainConfig, ModelConfig, SamplingConfig):
    for _f in fields(_cls):
        FIELDS.setdefault(_f.name, []).append(_f)
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def _squash(source: str) -> str:
    """Python source without comments, whitespace collapsed to single spaces."""
    kept = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            kept.append(tok.string)
    return " ".join(kept)


@pytest.fixture(scope="module")
def code() -> str:
    return "\n".join(_squash(p.read_text()) for p in sorted((ROOT / "minilab").rglob("*.py")))


def _snippets():
    """(page, line, text, is_doctest) for every Python snippet of docs/*.md: ```python blocks and >>> sessions."""
    for page in DOCS:
        text = page.read_text()
        for m in FENCE.finditer(text):
            lang, body = m.group(1), m.group(2)
            if lang in ("python", "py") or ">>>" in body:
                yield pytest.param(body, ">>>" in body, id=f"{page.name}:{text[: m.start()].count(chr(10)) + 1}")


@pytest.mark.parametrize(("body", "is_doctest"), list(_snippets()))
def test_every_python_snippet_in_the_docs_is_in_the_code_or_runs(body, is_doctest, code):
    if is_doctest:  # run it; every output line must be what the code prints today
        test = doctest.DocTestParser().get_doctest(body, {**vars(minilab)}, "snippet", None, 0)
        out = io.StringIO()
        runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
        result = runner.run(test, out=out.write)
        assert result.attempted > 0 and result.failed == 0, out.getvalue()
    else:  # a quotation of the code: the same tokens, in the same order, somewhere in minilab/
        assert _squash(body) in code, f"this snippet is not in minilab/ any more:\n{body}"


def test_the_snippet_check_can_fail(code):
    assert _squash("x = x + self.mlp(self.ln2(x))") in code
    assert _squash("future = ones(T, T).triu(1)") not in code  # what docs/how-it-works.md used to show


def _expected(name: str, quoted: str):
    """Whether ``quoted`` (a default as a page writes it) is a code default of setting ``name``; None: no value."""
    verdicts = [_matches(f, quoted) for f in FIELDS[name]]
    return None if all(v is None for v in verdicts) else any(verdicts)


def _matches(f, quoted: str):
    word = re.split(r" \(|:| =", quoted.strip().strip("`"))[0].strip().strip("`")
    if word == "auto":  # a stand-in the run resolves: 0 or -1 in the config, or the word itself
        return f.default in (0, -1, "auto")
    if word in ("on", "off", "tied", "untied"):
        return f.default is (word in ("on", "tied"))
    number = word.replace(",", "")
    if re.fullmatch(r"-?\d+(\.\d+)?(e-?\d+)?", number):
        value = f.default if f.default is not None else f.metadata.get("shown")
        return isinstance(value, (int, float)) and not isinstance(value, bool) and float(number) == float(value)
    if f.default in ("", None):  # a name made at run time ('time + data name'), a fresh seed: no value
        return None
    return word == shown_default(f)


def _quoted_defaults():
    """(page, flag, quoted default) from tables with a 'default' column and from '`--flag` (N)' phrases."""
    for page in PAGES:
        text = page.read_text()
        header = None
        for line in text.splitlines():
            row = line.strip().strip("|")
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)] if line.startswith("|") else None
            if cells is None:
                header = None
            elif header is None:
                header = [c.lower() for c in cells]
            elif "default" in header and not set(line) <= set("|-: "):
                named = [re.findall(r"`--(\w+)", c) for c in cells]
                flags = [f for f in next((n for n in named if n), []) if f in FIELDS]  # the flag column's
                values = cells[header.index("default")].split(", ")
                if flags and len(values) == len(flags):
                    yield from ((page.name, f, v) for f, v in zip(flags, values))
        for flag, quoted in re.findall(r"`--(\w+)` \((?:default )?([^)]*)\)", text):
            if flag in FIELDS and re.match(r"[\d.]", quoted):
                yield page.name, flag, quoted
        for name, quoted in re.findall(r"\(`(\w+)`, ([\d.]+)\)", text):  # '(`weight_decay`, 0.1)'
            if name in FIELDS:
                yield page.name, name, quoted


def test_every_default_the_docs_quote_is_the_codes():
    checked, wrong = 0, []
    for page, name, quoted in _quoted_defaults():
        ok = _expected(name, quoted)
        if ok is not None:
            checked += 1
            if not ok:
                wrong.append(
                    f"{page}: --{name} quoted as {quoted!r}, the code's default is {shown_default(FIELDS[name])}"
                )
    assert not wrong, "\n".join(wrong)
    assert checked >= 20, f"only {checked} quoted defaults found: did the tables' format change?"


def test_the_default_check_can_fail():
    assert _expected("batch_size", "32") is False  # the auto batch size is 0 in the config, not 32
    assert _expected("batch_size", "auto: 32") and _expected("d_ff", "1024") and not _expected("d_ff", "4 x C")
    assert not _expected("temperature", "1.0") and _expected("temperature", "0.8")
    assert _expected("tie_embeddings", "tied") and not _expected("compile", "on")


def test_the_worked_numbers_of_how_it_works():
    import torch

    from minilab.model.gpt import GPT
    from minilab.training.optim import lr_at

    page = (ROOT / "docs" / "how-it-works.md").read_text()
    tok = minilab.CharTokenizer.from_text("hello world")
    torch.manual_seed(0)
    example = GPT(ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_heads=4, n_layers=2, d_ff=128)).eval()
    ids = torch.tensor([tok.encode("hello world")])
    _, loss = example(ids[:, :-1], ids[:, 1:])
    assert "`d_model=32`, `n_heads=4`, `n_layers=2`, `d_ff=128`, seed 0" in page
    assert f"has {example.num_params():,} parameters" in page
    assert f"a loss of {loss.item():.3f}" in page
    assert f"a 65-character text has {GPT(ModelConfig(vocab_size=65)).num_params():,}" in page
    # "For 1000 steps with 100 of warmup and lr=1e-3, the rate is 1e-5 at step 0, 1e-3 at step 100,
    # 5.5e-4 halfway through the decay (step 550) and 1e-4 at the last step."
    lrs = [lr_at(s, 1000, 100, 1e-3, 1e-4) for s in (0, 100, 550, 999)]
    assert lrs == pytest.approx([1e-5, 1e-3, 5.5e-4, 1e-4], rel=1e-3)
    assert "the rate is 1e-5 at step 0, 1e-3 at step 100, 5.5e-4 halfway" in " ".join(page.split())


# ---------------------------------------------------------------- the package map and its layers

# Top to bottom, as the map draws them: a module imports only from its own group or a lower one.
LAYERS = ["app", "inside", "training", "generation", "checkpoint", "model", "tokenizers", "leaves"]
LEAVES = {"files", "checks", "errors", "device", "precision", "plots"}


def _group(module: str) -> str:
    part = module.split(".")[1]
    return "leaves" if part in LEAVES else part


def _imports() -> dict[str, set[str]]:
    """minilab module -> the minilab modules it imports (anywhere in the file, lazy imports included)."""
    graph = {}
    for path in (ROOT / "minilab").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
        graph[module] = {n for n in names if n.startswith("minilab.")}
    return graph


def test_imports_run_one_way_down_the_layers():
    wrong = []
    for module, deps in _imports().items():
        if module in ("minilab", "minilab.__main__"):  # the package's front door imports from every layer
            continue
        for dep in deps:
            if LAYERS.index(_group(dep)) < LAYERS.index(_group(module)):
                wrong.append(f"{module} imports {dep}, a layer above it")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    graph = _imports()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module, path):
        state[module] = 1
        for dep in sorted(graph.get(module, ())):
            assert state.get(dep) != 1, " -> ".join([*path, module, dep])
            if dep not in state:
                visit(dep, [*path, module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_how_it_works_opens_with_a_map_of_every_folder_and_module():
    page = (ROOT / "docs" / "how-it-works.md").read_text()
    first = FENCE.search(page)
    assert page.index(first.group(0)) < page.index("## 1."), "the map must come first"
    drawn = first.group(2)
    assert len(drawn.splitlines()) <= 40  # one screen
    for path in (ROOT / "minilab").rglob("*.py"):
        if path.stem not in ("__init__", "__main__"):
            assert re.search(rf"(^|[\s:/]){path.name}\b", drawn), f"{path.relative_to(ROOT)} is not on the map"
    for folder in (p for p in (ROOT / "minilab").iterdir() if p.is_dir() and p.name != "__pycache__"):
        assert f"{folder.name}/" in drawn, f"minilab/{folder.name}/ is not on the map"
