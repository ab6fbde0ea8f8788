"""fastloss never needs torch: `import fastloss` does not import it, and without it
`import fastloss.torch` says how to get it. Runs whether or not torch is installed."""

import subprocess
import sys
from pathlib import Path

import fastloss

PACKAGE_PARENT = str(Path(fastloss.__file__).resolve().parent.parent)


def run(code):
    return subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {PACKAGE_PARENT!r})\n{code}"],
                          capture_output=True, text=True, timeout=120)


def test_import_fastloss_does_not_import_torch():
    proc = run("import fastloss, fastloss.functional, fastloss.reference\n"
               "print('torch' in sys.modules)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_fastloss_torch_without_torch_names_the_extra():
    proc = run("sys.modules['torch'] = None\n"
               "try:\n    import fastloss.torch\n"
               "except ImportError as exc:\n    print(exc)\n")
    assert proc.returncode == 0, proc.stderr
    assert "pip install fastloss[torch]" in proc.stdout
