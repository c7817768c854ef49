"""Installing distribution packages: from the host's configured apt sources, refreshing the
index only when the first try fails (a stale index, or none on a fresh cloud image), and an
error that names the packages when the sources cannot provide them."""

from __future__ import annotations

from ..errors import GpuctlError

APT = "DEBIAN_FRONTEND=noninteractive apt-get -y -q"


def apt_install_command(packages: list[str]) -> str:
    names = " ".join(packages)
    install = f"{APT} install --no-install-recommends {names}"
    return f"{install} || ({APT} update && {install})"


def apt_install(host, packages: list[str], why: str) -> None:
    from ..adapters.ssh import CommandFailed

    try:
        host.run(apt_install_command(packages), sudo=True)
    except CommandFailed as exc:
        lines = exc.stderr.strip().splitlines()
        # apt's first error names the cause (the mirror it could not reach); later ones echo it.
        errors = [line for line in lines if line.startswith("E: ")]
        tail = (errors[0] if errors else lines[-1] if lines else f"exit {exc.exit_code}")[:200]
        raise GpuctlError(f"could not install {' '.join(packages)} ({why}): {tail}",
                          "give the host a reachable apt mirror that has them, then rerun "
                          "(the step stays unfinished until then)") from None
