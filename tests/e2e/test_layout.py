"""The data directory's layout: base/layout is the only source file that composes a path under
it (repositories, packages, build logs, build roots, the secret, the lock, the database)."""
import glob
import os
import re

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
LAYOUT = {os.path.join("src", "base", "layout.c"), os.path.join("src", "base", "layout.h")}

COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
LITERAL = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
# "%s/repos", "%s/packages/%s", "%s/logs/builds", "%s/secret", "/slipway.db" ...
DATA_DIR_PATH = re.compile(r"(^|%s)/(repos|packages|logs|builds|secret|lock|slipway\.db)(/|\b)")
URL = re.compile(r"^/(api|v1|git)/")  # the HTTP routes name packages too


def data_dir_literals(text):
    """The string literals of C source `text` that spell a path under the data directory."""
    text = COMMENT.sub("", text)
    return [s for s in LITERAL.findall(text) if DATA_DIR_PATH.search(s) and not URL.match(s)]


def test_the_check_finds_what_the_old_code_had():
    """Lines as they were before the layout module: the check must catch each of them."""
    old = r'''
        asprintf(&p, "%s/packages/%s/%s.tar.zst", data_dir, app_id, package_id);
        asprintf(&p, "%s/logs/builds/%s.log", data_dir, package_id);
        asprintf(&p, "%s/repos/%s.git", data_dir ? data_dir : ".", app_id);
        asprintf(&path, "%s/secret", dir);
        asprintf(&path, "%s/lock", dir);
        snprintf(db_path, n, "%s/slipway.db", data_dir);
        snprintf(w->root, sizeof(w->root), "%s/builds/run/warm-%ld-%llu", dir, 1L, 2ULL);
        int r = asprintf(&repos_root, "%s/repos", data);
    '''
    assert len(data_dir_literals(old)) == 8, data_dir_literals(old)
    fine = r'''
        /* DIR/packages/<AppId>/<PackageId>.tar.zst */
        snprintf(path, sizeof(path), "/api/1/apps/%s/packages/%s/download", a, p);
        asprintf(&b->ws, "%s/ws", b->root);
        asprintf(&dir, "%s/%s/objects", repos, name);
    '''
    assert data_dir_literals(fine) == []


def test_only_the_layout_module_composes_data_directory_paths():
    found = []
    for path in sorted(glob.glob(os.path.join(ROOT, "src", "*", "*.[ch]"))):
        rel = os.path.relpath(path, ROOT)
        if rel in LAYOUT:
            continue
        for lit in data_dir_literals(open(path, encoding="utf-8").read()):
            found.append(f"{rel}: \"{lit}\"")
    assert not found, "paths under the data directory belong in src/base/layout.c:\n" + \
        "\n".join(found)
