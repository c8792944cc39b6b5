"""The Makefile: the flags the build needs do not depend on the ones a user gives."""
import os
import re
import subprocess

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def test_cflags_on_the_command_line_keep_what_the_build_needs(tmp_path):
    """`make CFLAGS=-O1` used to replace every flag, -Isrc and the warnings included, and the
    build failed. Checked on the commands make would run (make -n), in a build dir of its own."""
    p = subprocess.run(["make", "-n", f"B={tmp_path}", "CFLAGS=-O1", "SANITIZE=address",
                        "LDFLAGS=-Wl,-O1"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    compiles = [ln for ln in p.stdout.splitlines() if " -c src/" in ln]
    links = [ln for ln in p.stdout.splitlines() if " -o " in ln and " -c " not in ln]
    assert compiles and links, p.stdout[-2000:]
    for ln in compiles:
        for flag in ("-O1", "-Isrc", "-Werror", "-std=c17", "-fsanitize=address"):
            assert f" {flag}" in ln, (flag, ln)
    for ln in links:
        assert "-fsanitize=address" in ln and "-Wl,-O1" in ln, ln
        if "/slipway-instance " in ln:  # the launcher: libc alone
            assert not re.search(r" -l(?!c\b)", ln), ln
        else:
            assert "-lpthread" in ln, ln


def test_banned_functions_do_not_compile(tmp_path):
    """base/banned.h, included by every source file, makes strcpy, strcat, sprintf, vsprintf,
    strtok and gets compile errors; and every file under src/ includes it."""
    src = tmp_path / "banned.c"
    src.write_text('#include <string.h>\n#include "base/banned.h"\n'
                   'void f(char *a) { strcpy(a, "x"); }\n')
    p = subprocess.run(["cc", "-c", "-Werror", "-Isrc", str(src), "-o", str(tmp_path / "b.o")],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "sorry_strcpy_is_a_banned_function" in p.stderr, p.stderr
    import glob
    for path in glob.glob(os.path.join(ROOT, "src", "*", "*.c")):
        assert '#include "base/banned.h"' in open(path).read(), path
