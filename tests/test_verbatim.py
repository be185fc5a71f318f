"""Family 6, verbatim memory versus an in-context edit: texts, passages, edits and the probes of each condition."""

from __future__ import annotations

from pathlib import Path

import pytest

from phfe.data.probes import Probe, from_dataset, to_dataset
from phfe.data.verbatim import (
    CORE,
    FRAME,
    LICENSE_DIR,
    MAX_WORDS,
    MIN_WORDS,
    PUBLIC_DOMAIN,
    RULE,
    SUBSTITUTES,
    VerbatimMemory,
    famous_texts,
    license_texts,
    passages,
    substitute,
    zen_of_python,
)
from phfe.tutors import DemonstrationTutor, NoTutor, RuleTutor

CONDITIONS = {"closed_book": (0, None), "edited_in_context": (0, 1), "original_in_context": (0, 0)}
FAKE_LICENSE = (
    "FAKE PUBLIC LICENSE\n\n  This made-up licence lets every user copy the program and share the source code "
    "with other users, provided that each copy keeps this notice.\n\n  The authors give no warranty for the "
    "software: the whole risk of using the program is with the user, and no author is liable for damages of "
    "any kind arising from the work or from any version of it that others distribute."
)


@pytest.fixture(scope="module")
def probes() -> list[Probe]:
    return VerbatimMemory().build(seed=0, tutor=NoTutor())


def by_item(probes: list[Probe]) -> dict[str, dict[str, Probe]]:
    items: dict[str, dict[str, Probe]] = {}
    for p in probes:
        items.setdefault(p.item_id, {})[p.condition] = p
    return items


def test_zen_of_python_is_decoded_without_printing(capsys: pytest.CaptureFixture[str]) -> None:
    zen = zen_of_python()
    assert capsys.readouterr().out == ""
    assert zen.startswith("The Zen of Python, by Tim Peters\n\nBeautiful is better than ugly.\n")
    assert "There should be one-- and preferably only one --obvious way to do it." in zen
    assert zen.endswith("Namespaces are one honking great idea -- let's do more of those!")


def test_licences_are_read_where_present_and_skipped_where_absent(tmp_path: Path) -> None:
    assert license_texts(tmp_path) == {}
    names = famous_texts(tmp_path)
    assert set(names) == {*PUBLIC_DOMAIN, "zen_of_python"} and list(names) == sorted(names)
    (tmp_path / "GPL-3").write_text(FAKE_LICENSE)
    (tmp_path / "NOT-LISTED").write_text(FAKE_LICENSE)
    assert license_texts(tmp_path) == {"license:GPL-3": FAKE_LICENSE}
    probes = VerbatimMemory(license_dir=str(tmp_path)).build(seed=0, tutor=NoTutor())
    assert "license:GPL-3" in {p.meta["text"] for p in probes}
    without = VerbatimMemory(license_dir=str(tmp_path / "missing")).build(seed=0, tutor=NoTutor())
    assert not any(p.meta["text"].startswith("license:") for p in without)
    assert len({p.item_id for p in without}) == len(PUBLIC_DOMAIN) + 2  # the Zen of Python makes two passages


@pytest.mark.skipif(not (LICENSE_DIR / "GPL-3").is_file(), reason="no Debian licence files on this system")
def test_the_systems_licences_are_used(probes: list[Probe]) -> None:
    assert license_texts()["license:GPL-3"].lstrip().startswith("GNU GENERAL PUBLIC LICENSE")
    texts = {p.meta["text"] for p in probes}
    assert {"license:GPL-3", "license:Apache-2.0"} <= texts
    assert len(by_item(probes)) == 40 and len(probes) == 120  # the default settings


def test_passages_are_in_order_and_sized() -> None:
    for name, text in famous_texts().items():
        found = passages(text)
        assert found, name
        position = 0
        for passage in found:
            assert MIN_WORDS <= len(passage.split()) <= MAX_WORDS, (name, passage)
            position = text.index(passage, position) + len(passage)
    assert passages(PUBLIC_DOMAIN["gettysburg_address"]) == [PUBLIC_DOMAIN["gettysburg_address"]]
    assert passages("word " * 25) == []  # shorter than a passage


def test_substitutes_keep_case_punctuation_and_agreement() -> None:
    assert substitute("times,") == "days,"
    assert substitute("Light;") == "Fire;"
    assert substitute("SOFTWARE") == "HARDWARE"
    assert substitute("Nature's") == "Reason's"
    assert substitute("2007") == "2008" and substitute("(50%)") == "(51%)"
    assert substitute("owner", previous="an") == "author"
    assert substitute("evening", previous="an") is None  # "an twilight"
    assert substitute("free", previous="a") is None  # "a open"
    assert substitute("the") is None and substitute("heart-ache") is None
    assert all(key.isalpha() and key.islower() and value.isalpha() for key, value in SUBSTITUTES.items())
    assert all(key != value for key, value in SUBSTITUTES.items())


def test_generation_is_deterministic_by_seed(probes: list[Probe]) -> None:
    family = VerbatimMemory()
    assert family.build(seed=0, tutor=NoTutor()) == probes
    assert family.build(seed=1, tutor=NoTutor()) != probes
    assert from_dataset(to_dataset(probes)) == probes


def shown_passage(probe: Probe, prefix: str) -> str:
    """The passage an in-context probe shows before asking for the text again."""
    before, after = FRAME.split("{passage}")
    assert probe.prompt.startswith(before) and probe.prompt.endswith(after + prefix)
    return probe.prompt[len(before) : -len(after + prefix)]


def test_conditions_indices_and_prompts(probes: list[Probe]) -> None:
    for item in by_item(probes).values():
        assert set(item) == set(CONDITIONS)
        prefix = item["closed_book"].prompt  # no tutor: the closed book prompt is the passage's prefix
        original, edited = item["closed_book"].candidates
        for condition, (memorized, in_context) in CONDITIONS.items():
            p = item[condition]
            assert (p.memorized, p.in_context, p.candidates) == (memorized, in_context, (original, edited))
        as_written = shown_passage(item["original_in_context"], prefix)
        as_edited = shown_passage(item["edited_in_context"], prefix)
        assert as_written.startswith(prefix + original) and as_edited.startswith(prefix + edited)
        assert as_written[len(prefix + original) :] == as_edited[len(prefix + edited) :]  # the same rest


def test_edits_change_exactly_the_recorded_word(probes: list[Probe]) -> None:
    for p in probes:
        original, edited = p.candidates
        assert original != edited and original.startswith(" ") and edited.startswith(" ")
        assert 5 <= len(original.split()) <= 12
        differing = [(a, b) for a, b in zip(original.split(), edited.split(), strict=True) if a != b]
        assert len(differing) == 1, p.candidates
        (a, b), (word, new) = differing[0], p.meta["edit"]
        assert substitute(a) == b and (CORE.match(a)[2], CORE.match(b)[2]) == (word, new)
        if p.condition != "edited_in_context":  # the substitute appears nowhere else
            assert new.lower() not in {m[2].lower() for m in map(CORE.match, p.prompt.split()) if m}
        assert (p.in_context == p.memorized) == (p.condition == "original_in_context")


def test_tutors_teach_before_every_condition() -> None:
    plain = VerbatimMemory(n_items=3).build(seed=0, tutor=NoTutor())
    taught = VerbatimMemory(n_items=3, ks=(0, 2, 4)).build(seed=0, tutor=DemonstrationTutor())
    assert len(plain) == 3 * 3 and len(taught) == 3 * 3 * 3 and {p.k for p in taught} == {0, 2, 4}
    by_k = {(p.item_id, p.condition, p.k): p.prompt for p in taught}
    for p in plain:
        assert by_k[p.item_id, p.condition, 0] == p.prompt
        two, four = by_k[p.item_id, p.condition, 2], by_k[p.item_id, p.condition, 4]
        assert two.endswith(p.prompt) and two.startswith("Here is a text:\nTwinkle")
        assert four.startswith(two[: -len(p.prompt)])  # k=2 is a prefix of k=4
    assert VerbatimMemory(n_items=3, ks=(0, 2, 4)).build(seed=0, tutor=NoTutor()) == plain  # no k to vary
    ruled = VerbatimMemory(n_items=3).build(seed=0, tutor=RuleTutor())
    assert [p.prompt for p in ruled] == [f"{RULE}\n{q.prompt}" for q in plain]


def test_settings_are_checked_and_probes_cached(tmp_path: Path) -> None:
    for bad in ({"ks": (9,)}, {"continuation_words": (6, 5)}, {"min_prefix_words": 0}):
        with pytest.raises(ValueError):
            VerbatimMemory(**bad)
    family = VerbatimMemory(n_items=2)
    assert family.probes(seed=3, tutor=NoTutor(), cache_dir=tmp_path) == family.build(seed=3, tutor=NoTutor())
    assert family.probes(seed=3, tutor=NoTutor(), cache_dir=tmp_path) == family.build(seed=3, tutor=NoTutor())
