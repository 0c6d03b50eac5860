#!/usr/bin/env bash
# Build the raftkms container image from the source in this repository:
#
#   docker/build.sh [--isolated] [--jobs N] [--tag IMAGE]   (default tag raftkms:latest, or $RAFTKMS_IMAGE)
#
# 1. docker/base-image.sh makes raftkms-base and raftkms-builder offline if they are missing.
# 2. Default: `cargo build --bin raftkms` runs in a raftkms-builder container that sees the source
#    tree, the host's rustup toolchain, cargo home and target directory ($CARGO_TARGET_DIR, default
#    /var/cache/raftkms/target) at the same paths as the host. Cargo's fingerprints then match the
#    host's: the build is incremental, and costs nothing when the host already built this source.
#    The container has no network (crates come from the host's cargo registry; run `cargo fetch`
#    on the host if a crate is missing).
#    --isolated: everything is compiled inside `docker build` instead (Dockerfile stage `source`,
#    BuildKit cache mounts; crates are downloaded from crates.io by the build). Self-contained, but
#    the first build is cold (about 20 minutes on 2 cores).
# 3. `docker build` makes the runtime image on raftkms-base: the binary, a non-root user, a health
#    check. Prints the time each step took.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd "$here/.." && pwd -P)
image=${RAFTKMS_IMAGE:-raftkms:latest}
isolated=0
jobs=""
while (($#)); do
    case $1 in
        --isolated) isolated=1 ;;
        --jobs)
            jobs=${2:?--jobs needs a value}
            shift
            ;;
        --tag)
            image=${2:?--tag needs a value}
            shift
            ;;
        -h | --help)
            sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "build.sh: unknown argument $1 (try --help)" >&2
            exit 2
            ;;
    esac
    shift
done

export DOCKER_BUILDKIT=1
started=$SECONDS
step() { echo "build.sh: $*"; }

# The Dockerfile needs BuildKit (RUN --mount, unused stages skipped). Newer docker CLIs reach it
# only through the buildx plugin; the 20.10 CLI (Debian's docker.io, /usr/bin/docker) has it built in.
build_cli=""
for cli in docker /usr/bin/docker; do
    command -v "$cli" >/dev/null 2>&1 || continue
    if "$cli" buildx version >/dev/null 2>&1; then
        build_cli=$cli
        break
    fi
    major=$("$cli" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)
    if [[ $major =~ ^[0-9]+$ ]] && ((major < 23)); then
        build_cli=$cli
        break
    fi
done
[[ -n $build_cli ]] || {
    echo "build.sh: no docker CLI with BuildKit: install the buildx plugin (Debian: docker-buildx)" >&2
    exit 1
}

"$here/base-image.sh" all

stage=$(mktemp -d /tmp/raftkms-image.XXXXXX)
trap 'rm -rf "$stage"' EXIT
trap 'exit 130' INT TERM

revision=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git -C "$repo" diff --quiet HEAD -- 2>/dev/null; then
    revision="$revision-dirty"
fi

if ((isolated)); then
    # The host's toolchain (the only Rust toolchain on the project's machines) as an image that the
    # `source` stage bind-mounts; made once per toolchain version.
    rustc_version=$(rustc --version | awk '{print $2}')
    toolchain_image=raftkms-toolchain:$rustc_version
    if ! docker image inspect "$toolchain_image" >/dev/null 2>&1; then
        sysroot=$(rustc --print sysroot)
        step "packing the host toolchain $sysroot as $toolchain_image"
        tar -C "$sysroot" --exclude=./share/doc --transform 's,^\.,toolchain,' -c . |
            docker import -m "rust toolchain $rustc_version from the host" - "$toolchain_image" >/dev/null
    fi
    t0=$SECONDS
    step "compiling raftkms inside docker build (stage source) and making $image"
    "$build_cli" build -f "$here/Dockerfile" --build-arg BINARY_FROM=source \
        --build-arg TOOLCHAIN_IMAGE="$toolchain_image" --build-arg JOBS="$jobs" \
        --secret id=cacert,src="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" \
        --label org.opencontainers.image.revision="$revision" -t "$image" --progress=plain \
        "$repo"
    step "image $image built in $((SECONDS - t0)) s (total $((SECONDS - started)) s)"
    exit 0
fi

# --- default: compile in the builder container, sharing the host's cargo state -------------------
command -v cargo >/dev/null || {
    echo "build.sh: needs the host's Rust toolchain (rustup): cargo is not on PATH" >&2
    exit 1
}
cargo_home=${CARGO_HOME:-$HOME/.cargo}
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
target=${CARGO_TARGET_DIR:-/var/cache/raftkms/target}
mkdir -p "$target"
cargo_home=$(cd "$cargo_home" && pwd -P)
rustup_home=$(cd "$rustup_home" && pwd -P)
target=$(cd "$target" && pwd -P)

# Crates come from the host's registry; fetching is a no-op when the host already built.
t0=$SECONDS
(cd "$repo" && cargo fetch --locked --quiet)

# Pass on what changes cargo's fingerprints or build scripts, so both sides agree.
env_args=()
while IFS= read -r name; do
    env_args+=(-e "$name")
done < <(compgen -e | grep -E '^(RUSTFLAGS|RUSTDOCFLAGS|RUSTUP_TOOLCHAIN|CARGO_(BUILD|PROFILE|INCREMENTAL|ENCODED_RUSTFLAGS)[A-Z_]*|CC|CXX|AR|CFLAGS|CXXFLAGS|LIBCLANG_PATH|BINDGEN_[A-Z_]+)$' || true)

step "cargo build --bin raftkms in raftkms-builder (source $repo, target $target)"
docker run --rm --network none \
    --user "$(id -u):$(id -g)" \
    -e HOME="$HOME" -e CARGO_HOME="$cargo_home" -e RUSTUP_HOME="$rustup_home" \
    -e CARGO_TARGET_DIR="$target" -e CARGO_TERM_COLOR=never \
    -e PATH="$cargo_home/bin:/usr/local/bin:/usr/bin:/bin" \
    "${env_args[@]}" \
    -v "$repo:$repo:ro" -v "$target:$target" \
    -v "$cargo_home:$cargo_home" -v "$rustup_home:$rustup_home:ro" \
    -w "$repo" raftkms-builder:bookworm \
    cargo build --frozen --bin raftkms ${jobs:+--jobs "$jobs"}
step "compiled in $((SECONDS - t0)) s"

cp "$target/debug/raftkms" "$stage/raftkms"
cp "$here/raftkms-ready" "$stage/raftkms-ready"
t0=$SECONDS
"$build_cli" build -q -f "$here/Dockerfile" \
    --label org.opencontainers.image.revision="$revision" -t "$image" "$stage" >/dev/null
step "image $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'), revision $revision) made in $((SECONDS - t0)) s; total $((SECONDS - started)) s"
