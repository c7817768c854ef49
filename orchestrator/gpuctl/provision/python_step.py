"""The requested Python with a virtualenv in the login user's home whose pip works.

Stock cloud images ship python3 without its venv package (Debian 12, Ubuntu 22.04/24.04):
`python3.X -m venv` then dies at ensurepip and leaves a venv with no pip. So the step is done
only when the venv's own interpreter is the wanted version, its pip imports and its `pip`
script points at it, and every requirement is installed at a matching version and imports.
Anything less, including a venv half-made by an earlier failure, is rebuilt.
"""

from __future__ import annotations

import shlex

from . import facts
from .base import Host, StepPlan, ask, read, settled
from .checks import DONE, TODO, Check, Verdict, keyed
from .packages import APT, apt_install
from ..errors import GpuctlError
from .settings import ProvisionSettings

# Runs under the venv's python, as the login user; argv[1:] are the requirements. One line
# per finding, read by judge_venv. Importing a distribution's top-level modules is what
# the user's code will do, so that is the test (an installed-but-broken wheel fails it).
VENV_PROBE = r'''
import importlib, sys
print("python %d.%d" % sys.version_info[:2])
try:
    import pip
    print("pip", pip.__version__)
    from pip._vendor.packaging.requirements import Requirement
except Exception as exc:
    print("pip-broken", type(exc).__name__)
    sys.exit()
from importlib import metadata
def tops(dist):
    text = dist.read_text("top_level.txt")
    if text:
        return [t for t in text.split() if t and not t.startswith("_")]
    names = set()
    for f in dist.files or []:
        head = f.parts[0]
        if head.endswith(".py") and len(f.parts) == 1:
            names.add(head[:-3])
        elif len(f.parts) > 1 and f.parts[1] == "__init__.py":
            names.add(head)
    return sorted(n for n in names if not n.startswith("_"))
for spec in sys.argv[1:]:
    try:
        req = Requirement(spec)
        dist = metadata.distribution(req.name)
    except Exception:
        print("req-missing", spec); continue
    if not req.specifier.contains(dist.version, prereleases=True):
        print("req-version", spec, dist.version); continue
    bad = []
    for name in tops(dist):
        try:
            importlib.import_module(name)
        except Exception:
            bad.append(name)
    print("req-import", spec, *bad) if bad else print("req-ok", spec)
'''

# The interpreter the venv is made from, and whether it can make one with pip in it.
BASE_PROBE = ("import sys; print('base %d.%d' % sys.version_info[:2]); "
              "import ensurepip, venv; print('venv-module ok')")


def venv_probe(s: ProvisionSettings) -> str:
    v = shlex.quote(s.venv)
    reqs = " ".join(shlex.quote(r) for r in s.requirements)
    # Writable by the login user too: a root-owned venv imports fine, but pip install fails.
    return (f"if [ -x {v}/bin/python ]; then {v}/bin/python -c {shlex.quote(VENV_PROBE)} {reqs}; "
            f"else echo 'venv missing'; fi\n"
            f"echo \"pip-script $(head -n1 {v}/bin/pip 2>/dev/null)\"\n"
            f"[ -w {v}/lib/python{s.python}/site-packages ] && [ -w {v}/bin ] && echo writable yes")


def judge_venv(text: str, s: ProvisionSettings) -> Verdict:
    answers = keyed(text)
    python = (answers.get("python") or [""])[0]
    pip_ok = "pip" in answers and "pip-broken" not in answers
    script = (answers.get("pip-script") or [""])[0]
    need_venv = ("venv" in answers or python != s.python or not pip_ok
                 or not script.startswith(f"#!{s.venv}/bin/python") or "writable" not in answers)
    if need_venv:
        why = ("no virtualenv" if "venv" in answers else
               f"the venv's python is {python or 'broken'}" if python != s.python else
               "the venv has no working pip" if not pip_ok else
               "the venv's pip script is broken" if not script.startswith(f"#!{s.venv}/bin/python")
               else "the venv is not writable by the login user")
        return Verdict(TODO, f"{why} at {s.venv}", {"venv": True})
    ok = set(answers.get("req-ok", []))
    missing = [r for r in s.requirements if r not in ok]
    if missing:
        # Installed but failing to import: pip calls it satisfied, so it must be reinstalled.
        broken = [r for r in missing if any(line.split(" ")[0] == r
                                            for line in answers.get("req-import", []))]
        return Verdict(TODO, f"requirements not installed or not importable: {', '.join(missing)}",
                       {"venv": False, "broken": broken})
    extra = f", {len(s.requirements)} requirement(s) import" if s.requirements else ""
    return Verdict(DONE, f"Python {python} virtualenv at {s.venv}, pip {answers['pip'][0]}{extra}")


def parse_base(text: str) -> tuple[str | None, bool]:
    """(version of python3.X, whether it can run `-m venv` with ensurepip) from BASE_PROBE."""
    answers = keyed(text)
    return (answers.get("base") or [None])[0], "venv-module" in answers


class PythonStep:
    id = "python"

    def check(self, s: ProvisionSettings) -> Check:
        return Check(venv_probe(s), lambda text: judge_venv(text, s))

    def plan(self, host: Host, s: ProvisionSettings, verdict: Verdict | None = None) -> StepPlan:
        verdict = ask(host, self.check(s), verdict)
        done = settled(verdict)
        if done:
            return done
        q, user = shlex.quote(s.venv), shlex.quote(s.login_user)
        actions: list[str] = []
        if verdict.data.get("venv"):
            actions += [f"install python{s.python} and python{s.python}-venv if -m venv cannot work",
                        f"rm -rf {q} && python{s.python} -m venv {q}"]
        if s.requirements:
            actions.append(f"{s.venv}/bin/pip install {' '.join(s.requirements)}")

        def apply(h: Host) -> None:
            if verdict.data.get("venv"):
                self._ensure_interpreter(h, s)
                # A failed venv is removed, so the next run finds nothing rather than half.
                h.run(f"rm -rf {q} && {{ python{s.python} -m venv {q} || {{ rm -rf {q}; exit 1; }}; }}"
                      f" && chown -R {user}: {q}", sudo=True)
            if s.requirements:
                reqs = " ".join(shlex.quote(r) for r in s.requirements)
                broken = " ".join(shlex.quote(r) for r in verdict.data.get("broken", []))
                fix = f"{q}/bin/pip install -q --force-reinstall --no-deps {broken} && " if broken else ""
                h.run(f"{fix}{q}/bin/pip install -q {reqs}; rc=$?; chown -R {user}: {q}; exit $rc",
                      sudo=True)

        return StepPlan(actions=actions, apply=apply)

    def _ensure_interpreter(self, h: Host, s: ProvisionSettings) -> None:
        """python3.X and its venv package, from the distribution first; Ubuntu falls back to
        the deadsnakes PPA for versions it does not package."""
        base, venv_ok = parse_base(h.run(f"python{s.python} -c {shlex.quote(BASE_PROBE)} 2>&1",
                                         check=False).stdout)
        if base == s.python and venv_ok:
            return
        wanted = [f"python{s.python}-venv"] if base == s.python else \
            [f"python{s.python}", f"python{s.python}-venv"]
        os_info = read(h, facts.OS_RELEASE)
        try:
            apt_install(h, wanted, f"Python {s.python} with venv")
        except GpuctlError:
            if os_info.id != "ubuntu" or base == s.python:
                raise
            h.run(f"{APT} install software-properties-common && "
                  "add-apt-repository -y ppa:deadsnakes/ppa", sudo=True)
            apt_install(h, wanted, f"Python {s.python} from deadsnakes")
        base, venv_ok = parse_base(h.run(f"python{s.python} -c {shlex.quote(BASE_PROBE)} 2>&1",
                                         check=False).stdout)
        if not venv_ok:
            raise GpuctlError(f"python{s.python} still cannot make a virtualenv after installing "
                              f"{' '.join(wanted)}", "check the host's Python packages")
