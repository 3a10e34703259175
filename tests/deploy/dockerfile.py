"""The Dockerfile's promises: non-root, a healthcheck, the toolchain at least Cargo.toml's
rust-version, migrations compiled in, a place for SQLite. Usage: dockerfile.py ROOT."""
import fnmatch, os, re, subprocess, sys, tempfile, tomllib
import yaml
from checklist import finish, need

root = sys.argv[1]
text = open(os.path.join(root, "Dockerfile")).read()
lines = re.sub(r"\\\n", " ", text).splitlines()
froms = [l.split()[1] for l in lines if l.startswith("FROM ")]
final = lines[max(i for i, l in enumerate(lines) if l.startswith("FROM ")):]
ignored = [p.strip().rstrip("/") for p in open(os.path.join(root, ".dockerignore"))
           if p.strip() and not p.startswith("#")]


m = re.fullmatch(r"rust:(1(?:\.\d+){0,2})-bookworm", froms[0])
need(bool(m), f"builder on rust:VERSION-bookworm (found {froms[0]})")
msrv = tomllib.load(open(os.path.join(root, "Cargo.toml"), "rb"))["package"].get("rust-version", "0")
def version(v):
    return tuple(int(x) for x in v.split("."))
# A floating tag (rust:1-) is the newest release; a pinned one must not be older
# than what Cargo.toml asks for (compared up to the precision of the tag).
tag = version(m.group(1)) if m else (0,)
need(tag == (1,) or tag >= version(msrv)[:len(tag)],
     f"builder's Rust {m.group(1) if m else '?'} >= Cargo.toml rust-version {msrv}")
need(len(froms) >= 2 and froms[-1] in ("gcr.io/distroless/cc-debian12:nonroot", "debian:bookworm-slim"),
     "small runtime image (distroless cc / bookworm-slim)")
need(any(re.match(r"RUN cargo (chef cook|build) .*--release.*--locked", l) for l in lines),
     "release build with --locked, dependencies in their own layer")
users = [l.split()[1] for l in final if l.startswith("USER ")]
need(users and users[-1].split(":")[0] not in ("0", "root"), "runs as a non-root user")
need("EXPOSE 8080" in final, "EXPOSE 8080")
need(any(l.startswith("HEALTHCHECK") and "healthcheck" in l.split("CMD", 1)[-1] for l in final),
     "HEALTHCHECK runs `tokengate healthcheck`")
need('ENTRYPOINT ["/usr/local/bin/tokengate"]' in final, "ENTRYPOINT is the tokengate binary")
for l in lines:
    if l.startswith("COPY ") and "--from=" not in l:
        for src in [w for w in l.split()[1:-1] if not w.startswith("--")]:
            if src != ".":
                need(os.path.exists(os.path.join(root, src)), f"COPY source {src} exists")
                need(not any(fnmatch.fnmatch(src, p) for p in ignored), f"COPY source {src} not in .dockerignore")
need(any(p == "secrets" for p in ignored), ".dockerignore keeps secrets/ out of the build context")

# sqlx::migrate! reads migrations/ while compiling: the build context and the
# builder stage (a `COPY . .` after cargo-chef's cook) must have it.
need(not any(fnmatch.fnmatch("migrations", p) or fnmatch.fnmatch("migrations/postgres", p)
             or fnmatch.fnmatch("migrations/sqlite", p) for p in ignored),
     "migrations/ is in the build context (not in .dockerignore)")
stages, stage = {}, None
for l in lines:
    if l.startswith("FROM "):
        words = l.split()
        stage = words[3] if len(words) > 3 and words[2].upper() == "AS" else words[1]
        stages[stage] = []
    elif stage:
        stages[stage].append(l)
builder = stages.get("builder", [])
build_at = next((i for i, l in enumerate(builder) if l.startswith("RUN cargo build")), None)
copies = [i for i, l in enumerate(builder)
          if l.startswith("COPY ") and "--from=" not in l and re.search(r"\s(\.|migrations/?)\s", l)]
cook_at = next((i for i, l in enumerate(builder) if "cargo chef cook" in l), -1)
need(build_at is not None and any(cook_at < i < build_at for i in copies),
     "the builder copies migrations/ (COPY . .) after cooking the dependencies, before cargo build")

# SQLite in the image: a directory of the service's user, and the image's
# config.yml pointing database.url into it. Run the Dockerfile's step for real.
need(any(l.startswith("COPY ") and "--chown=65532:65532" in l and l.split()[-1].rstrip("/") in ("./data", "/app/data")
         for l in final), "the runtime image has /app/data, owned by the service's user (SQLite)")
step = next((l for l in builder if l.startswith("RUN ") and "/out/config.yml" in l), None)
need(step is not None, "the builder writes the image's config.yml (/out/config.yml)")
if step:
    with tempfile.TemporaryDirectory() as out:
        run = subprocess.run(["sh", "-ec", step[4:].replace("/out/", out + "/")], cwd=root,
                             capture_output=True, text=True)
        need(run.returncode == 0, "that step works on this config.yml" + (f": {run.stderr.strip()}" if run.returncode else ""))
        image_config = os.path.join(out, "config.yml")
        if run.returncode == 0:
            image = yaml.safe_load(open(image_config))
            source = yaml.safe_load(open(os.path.join(root, "config.yml")))
            url = (image.get("database") or {}).get("url", "")
            need(url.startswith("sqlite:///app/data/"), f"the image's database.url is in /app/data ({url})")
            image["database"]["url"] = source["database"]["url"]
            need(image == source, "the image's config.yml differs from config.yml in database.url only")
finish()
