"""Swarm CA, node keys and certificates, and the commands that make them."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gossipfl.node.cli import main
from gossipfl.transport import IdentityError, NodeIdentity
from gossipfl.transport.identity import load_certificate, node_id_of


def test_swarm_init_keygen_and_the_printed_node_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["swarm", "init", str(tmp_path / "swarm")]) == 0
    assert main(["keygen", "--swarm", str(tmp_path / "swarm"), "--out", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    identity = NodeIdentity.from_dir(tmp_path / "a")
    assert printed == identity.node_id == node_id_of(load_certificate(tmp_path / "a" / "node.crt"))
    assert len(printed) == 64
    for key in (tmp_path / "swarm" / "ca.key", tmp_path / "a" / "node.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_two_step_signing_keeps_the_ca_key_away_from_the_device(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["swarm", "init", str(tmp_path / "swarm")])
    assert main(["keygen", "--csr", "--out", str(tmp_path / "device")]) == 0
    requested = capsys.readouterr().out.strip().splitlines()[-1]
    assert not (tmp_path / "device" / "node.crt").exists()
    assert (
        main(["swarm", "sign", str(tmp_path / "swarm"), str(tmp_path / "device" / "node.csr")]) == 0
    )
    signed = capsys.readouterr().out.strip().splitlines()[-1]
    identity = NodeIdentity.from_dir(tmp_path / "device")
    assert requested == signed == identity.node_id


def test_existing_keys_are_not_overwritten_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["swarm", "init", str(tmp_path / "swarm")])
    before = (tmp_path / "swarm" / "ca.key").read_bytes()
    assert main(["swarm", "init", str(tmp_path / "swarm")]) == 1
    assert "exists; refusing to overwrite it (use --force" in capsys.readouterr().err
    assert (tmp_path / "swarm" / "ca.key").read_bytes() == before
    main(["keygen", "--swarm", str(tmp_path / "swarm"), "--out", str(tmp_path / "a")])
    assert main(["keygen", "--swarm", str(tmp_path / "swarm"), "--out", str(tmp_path / "a")]) == 1
    assert (
        main(
            ["keygen", "--swarm", str(tmp_path / "swarm"), "--out", str(tmp_path / "a"), "--force"]
        )
        == 0
    )


def test_clear_errors_for_missing_or_foreign_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keygen", "--swarm", str(tmp_path / "nowhere"), "--out", str(tmp_path / "a")]) == 1
    assert "create one with `gossipfl swarm init" in capsys.readouterr().err
    main(["swarm", "init", str(tmp_path / "s1")])
    main(["swarm", "init", str(tmp_path / "s2")])
    main(["keygen", "--swarm", str(tmp_path / "s1"), "--out", str(tmp_path / "a")])
    (tmp_path / "a" / "ca.crt").write_bytes((tmp_path / "s2" / "ca.crt").read_bytes())
    with pytest.raises(IdentityError, match="was not signed by the swarm CA"):
        NodeIdentity.from_dir(tmp_path / "a")
    (tmp_path / "a" / "node.crt").write_text("garbage")
    with pytest.raises(IdentityError, match="is not a PEM certificate"):
        NodeIdentity.from_dir(tmp_path / "a")


def test_members_share_a_swarm_id_derived_from_the_ca(tmp_path: Path) -> None:
    main(["swarm", "init", str(tmp_path / "swarm")])
    for name in ("a", "b"):
        main(["keygen", "--swarm", str(tmp_path / "swarm"), "--out", str(tmp_path / name)])
    a, b = NodeIdentity.from_dir(tmp_path / "a"), NodeIdentity.from_dir(tmp_path / "b")
    assert a.swarm_id == b.swarm_id
    assert a.node_id != b.node_id


def test_a_private_key_open_to_other_users_is_refused_with_the_fix(tmp_path: Path) -> None:
    assert main(["swarm", "init", str(tmp_path / "swarm")]) == 0
    assert main(["keygen", "--swarm", str(tmp_path / "swarm"), "--out", str(tmp_path / "n")]) == 0
    key = tmp_path / "n" / "node.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600  # as written
    key.chmod(0o644)
    with pytest.raises(
        IdentityError, match=f"open to other users \\(mode 0644\\).*chmod 600 {key}"
    ):
        NodeIdentity.from_dir(tmp_path / "n")
    key.chmod(0o600)
    NodeIdentity.from_dir(tmp_path / "n")
