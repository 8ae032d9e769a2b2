"""``index --ray ADDRESS`` with no Ray cluster there fails in seconds, in one line, touching nothing."""

from __future__ import annotations

import time

import pytest

from cli import main

ray = pytest.importorskip("ray", reason="Ray is the optional extra .[cluster], installed by the test command")


# a closed port (refused at once); an address that accepts connections but is no Ray head node
# (where a proxy answers for every host, as in the sandbox the tests run in) or does not answer
@pytest.mark.parametrize("address", ["127.0.0.1:9", "10.255.255.1:6379"])
def test_an_unreachable_cluster_fails_in_seconds(rendered_dir, tmp_path, capsys, address):
    assert not ray.is_initialized()
    db = tmp_path / "never.db"
    started = time.monotonic()
    assert main(["index", str(rendered_dir), "--db", str(db), "--ray", address, "--quiet"]) == 2
    assert time.monotonic() - started < 15
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach the Ray head node" in err and address in err
    assert not db.exists()
