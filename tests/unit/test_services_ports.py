"""scripts/services.sh reserves its servers' ports in the kernel's list
(``net.ipv4.ip_local_reserved_ports``): ``up`` adds only those missing, ``down`` gives back
exactly those ``up`` added."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "services.sh"


def in_script(command: str, services_dir: Path | None = None) -> str:
    """What ``command`` prints in a shell that sourced the script."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
    if services_dir is not None:
        env["FANOUT_SERVICES_DIR"] = str(services_dir)
    result = subprocess.run(
        ["bash", "-c", f'source "{SCRIPT}"; {command}'],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return result.stdout.strip()


def test_a_list_in_the_kernels_format_is_read_and_written_back() -> None:
    assert in_script('expand_ports "46400-46402,48533,,1"').split() == [
        "46400",
        "46401",
        "46402",
        "48533",
        "1",
    ]
    assert in_script(r'printf "5\n3\n4\n10\n\n1\n4\n" | compact_ports') == "1,3-5,10"
    assert in_script('echo | compact_ports; expand_ports ""') == ""


def test_only_the_ports_not_reserved_are_missing() -> None:
    assert in_script(r'ports_missing "46400-46405,55432" "$(printf "55432\n55433\n46401\n")"') == (
        "55433"
    )
    assert in_script(r'ports_missing "" "$(printf "1\n2\n")"').split() == ["1", "2"]
    assert in_script(r'ports_missing "1-2" "$(printf "1\n2\n")"') == ""


def test_released_ports_leave_the_others_reserved() -> None:
    released = r'"$(printf "55433\n%s\n" $(seq 46400 46405))"'
    assert in_script(f'ports_without "46400-46405,48533,55432-55435" {released}') == (
        "48533,55432,55434-55435"
    )


def test_up_adds_only_missing_ports_and_down_removes_those_it_added(tmp_path: Path) -> None:
    reserved = tmp_path / "ip_local_reserved_ports"
    reserved.write_text("1000-1002,55432\n")
    services_dir = tmp_path / "services"
    services_dir.mkdir()
    use_file = f'RESERVED_PORTS_FILE="{reserved}"'

    in_script(f"{use_file}; reserve_ports postgres redis kafka", services_dir)
    after_up = reserved.read_text().strip()
    assert after_up == "1000-1002,55432,56379,59092-59093"
    in_script(f"{use_file}; reserve_ports postgres redis kafka", services_dir)
    assert reserved.read_text().strip() == after_up
    assert (services_dir / "reserved-ports").read_text().split() == ["56379", "59092", "59093"]

    in_script(f"{use_file}; release_ports", services_dir)
    assert reserved.read_text().strip() == "1000-1002,55432"
    assert not (services_dir / "reserved-ports").exists()


def test_the_shard_s_standby_is_a_service_with_its_port_and_its_primary_s() -> None:
    assert "postgres-shard-a-replica" in in_script('echo "${ALL_SERVICES[*]}"').split()
    assert in_script("service_ports postgres-shard-a-replica").split() == ["55434", "55436"]
    assert in_script("postgres_shard_a_replica_url") == (
        "postgresql://fanout:fanout@127.0.0.1:55436/postgres"
    )
