"""The committed generated/<cluster>/.inputs.json records are current.

A record is a cache (talosprov/workflows/inputs.py): a stale one is never wrong, it only makes
every generate, generate --check and re-run of install build everything again. That is what
happened unnoticed after redact.py changed: the generator digest in the records no longer matched,
and every test and every operator run paid for full builds. So this repository's own records must
match today's inputs and outputs; `generate --check --full` (tests/emulated/
test_secrets_generate_e2e.py) proves the outputs themselves are what a build writes.
"""

from __future__ import annotations

import pytest

from talosprov.model import Repo
from talosprov.workflows import inputs as inputs_wf
from tests.conftest import ROOT

REPO = Repo(ROOT)
ALIASES = sorted(REPO.all_clusters())


@pytest.mark.parametrize("alias", ALIASES)
def test_committed_record_matches_todays_inputs_and_outputs(alias: str) -> None:
    cluster = REPO.all_clusters()[alias]
    record = inputs_wf.read_record(REPO, cluster)
    assert record is not None, f"generated/{cluster.name}/{inputs_wf.RECORD} is missing"
    # the talosctl that built it is part of the inputs; today's code and files are the rest
    now = inputs_wf.input_digests(REPO, cluster, record.inputs.get("talosctl", ""))
    stale = sorted(k for k in set(now) | set(record.inputs) if now.get(k) != record.inputs.get(k))
    assert not stale, (
        f"generated/{cluster.name}/{inputs_wf.RECORD} is stale in {', '.join(stale)}: "
        f"run `invoke generate --cluster {alias} --throwaway-bundle` (it writes the same redacted "
        "files; TALOSCTL names the talosctl of the record) and commit the record"
    )
    assert record.outputs == inputs_wf.output_digests(REPO, cluster)
