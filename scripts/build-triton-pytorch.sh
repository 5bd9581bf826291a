#!/usr/bin/env bash
# Builds Triton's own PyTorch (libtorch) backend, libtriton_pytorch.so, against the installed torch.
#
# Without it the local Triton serves TorchScript through a Python-based backend (one python stub
# process per model instance, ~234 MiB each, 2.4 s to load cifar10); with it, in Triton's own
# process (0.34 s, and the log reads as a cluster's). Nothing breaks when this build cannot run:
# `make setup` goes on, and `python -m helpers.local status` says which backend serves TorchScript.
#
# Release branch r24.10 matches the tritonserver 2.51 in the nvidia-pytriton wheel. The four
# sources are taken, in this order, from:
#   1. TRITON_BACKEND_SRC: a folder holding the four tarballs (<repo>-r24.10.tar.gz) or trees (<repo>/);
#   2. MMS_TRITON_THIRD_PARTY, default ../shared/third_party/triton-r24.10 next to the checkout;
#   3. `git clone --depth 1 --branch r24.10` of each upstream repository (needs the internet).
# Tarballs must match the sha256s below and clones the commits below (both from that folder's
# README.md); a tree given in TRITON_BACKEND_SRC is used as it is.
#
# Cache: $MMS_CACHE_DIR/triton-pytorch/<recipe>/ (default ~/.cache/mms-notebooks), outside the repo;
# <recipe> hashes this script and the torch version it was built against, so a changed recipe or
# another torch builds once more. helpers/local/stack/torch_backend.py computes the same hash to find it.
# A build that cannot run leaves a FAILED file there with the reason, which `status` quotes. One
# that ran and failed (cmake or the compiler) would fail alike next time: it is not retried on every
# `make setup` until its .failed-build marker is removed; missing tools or sources are retried.
#
# Settings: TORCH_PYTHON (the interpreter whose torch is used; default .venv/bin/python),
# MMS_BUILD_JOBS (parallel compile jobs; default 1: ~90 s on 2 cores, ~1 GB RAM).
set -euo pipefail

repo_root=$(cd "$(dirname "$0")/.." && pwd)
script="$repo_root/scripts/build-triton-pytorch.sh"
py="${TORCH_PYTHON:-$repo_root/.venv/bin/python}"
jobs="${MMS_BUILD_JOBS:-1}"
branch=r24.10
repos=(pytorch_backend backend core common)
declare -A commit=(
  [pytorch_backend]=e97a90061f7399b25368e2cb1f6d5c40f8cbae4e
  [backend]=ac03a5d97403dec841ad46d0439e93db12c9268f
  [core]=bfec7c61dc0939433f64f14e89b1973073eac8ba
  [common]=578491fc3944f77d16a6a38e3d7691c485c47ba0
)
declare -A tarball_sha256=(
  [pytorch_backend]=3bbd9bd9d3254a9f2f1eb6cd9870890443d0541eea7974964efe6b6810895b53
  [backend]=151da6fa28fbece76c7357a72e089768d4322e2382cce8b6b578424a82b4987a
  [core]=a77d172b45f5582fa6a089c894d003cdcd6e81f57d941a196eb4ca93ff7d8a63
  [common]=f8d42fac07949257d938261d3330ced625b33829ac02bac37fa837a4c6f6c57c
)

say() { echo "build-triton-pytorch: $*"; }
cache="${MMS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mms-notebooks}/triton-pytorch"
mkdir -p "$cache"

[ -x "$py" ] || { say "no Python at $py (run it from make setup, or set TORCH_PYTHON)" >&2; exit 1; }
torch_version=$("$py" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null) \
  || { say "torch is not installed in $py: nothing to build against" >&2; exit 1; }
recipe=$({ cat "$script"; printf 'torch=%s\n' "$torch_version"; } | sha256sum | cut -c1-16)
out="$cache/$recipe"
lib="$out/libtriton_pytorch.so"
log="$out/build.log"
mkdir -p "$out"

# One build at a time: a second `make setup` waits here, then finds the cache filled.
exec 9>"$cache/.lock"
flock -n 9 || { say "another build is running; waiting for it"; flock 9; }
if [ -f "$lib" ]; then
  say "cached in $out (torch $torch_version)"
  exit 0
fi
if [ -f "$out/.failed-build" ]; then
  say "not retried: this recipe failed to build against torch $torch_version before: $(cat "$out/FAILED" 2>/dev/null)" >&2
  say "remove $out/.failed-build to try again; TorchScript uses the Python-based backend meanwhile" >&2
  exit 1
fi

# Every way out from here on that is not a built library leaves its reason in FAILED.
rm -f "$out/FAILED"
fail() {
  echo "$*" >"$out/FAILED"
  say "$*" >&2
  say "TorchScript models will be served by the Python-based backend instead" >&2
  exit 1
}
fail_build() { touch "$out/.failed-build"; fail "$@"; }

missing=()
for tool in cmake g++ make; do command -v "$tool" >/dev/null || missing+=("$tool"); done
[ -f /usr/include/rapidjson/document.h ] || missing+=("rapidjson-dev")
[ ${#missing[@]} -eq 0 ] \
  || fail "cannot build: missing ${missing[*]} (Debian: apt-get install cmake g++ rapidjson-dev; make setup does, as root)"

began=$SECONDS
say "building libtriton_pytorch.so ($branch) against torch $torch_version into $out (about 2 minutes; log: $log)"
: >"$log"
src="$out/src"
rm -rf "$src" "$out/build"
mkdir -p "$src"

# 1. The four sources.
third_party="${MMS_TRITON_THIRD_PARTY:-$repo_root/../shared/third_party/triton-$branch}"
from_folder() {  # $1: a folder with <repo>-r24.10.tar.gz or <repo>/ for each repo; 0 if all were taken
  local folder=$1 name have=0
  for name in "${repos[@]}"; do
    [ -f "$folder/$name-$branch.tar.gz" ] || [ -d "$folder/$name" ] && have=$((have + 1))
  done
  [ $have -eq ${#repos[@]} ] || return 1
  for name in "${repos[@]}"; do
    if [ -f "$folder/$name-$branch.tar.gz" ]; then
      local sum
      sum=$(sha256sum "$folder/$name-$branch.tar.gz" | cut -d' ' -f1)
      [ "$sum" = "${tarball_sha256[$name]}" ] \
        || fail "$folder/$name-$branch.tar.gz has sha256 $sum, expected ${tarball_sha256[$name]}: replace it with the r24.10 archive"
      mkdir -p "$src/$name"
      tar -xzf "$folder/$name-$branch.tar.gz" -C "$src/$name" --strip-components=1 \
        || fail "unpacking $folder/$name-$branch.tar.gz failed"
    else
      cp -r "$folder/$name" "$src/$name" || fail "copying $folder/$name failed"
    fi
  done
}
if [ -n "${TRITON_BACKEND_SRC:-}" ]; then
  say "[1/3] sources from TRITON_BACKEND_SRC=$TRITON_BACKEND_SRC"
  from_folder "$TRITON_BACKEND_SRC" \
    || fail "TRITON_BACKEND_SRC=$TRITON_BACKEND_SRC does not hold all of ${repos[*]} (as <repo>-$branch.tar.gz or <repo>/)"
elif [ -d "$third_party" ]; then
  say "[1/3] sources from $third_party (sha256 checked)"
  from_folder "$third_party" || fail "$third_party does not hold all of ${repos[*]} as <repo>-$branch.tar.gz"
else
  say "[1/3] sources: no local copy at $third_party; cloning $branch from GitHub"
  command -v git >/dev/null || fail "cannot get the sources: no local copy at $third_party and git is not installed"
  for name in "${repos[@]}"; do
    git clone -q --depth 1 --branch "$branch" "https://github.com/triton-inference-server/$name.git" "$src/$name" >>"$log" 2>&1 \
      || fail "cannot get the sources: cloning $name failed (no network?); set TRITON_BACKEND_SRC to a folder holding them (see $log)"
    head=$(git -C "$src/$name" rev-parse HEAD)
    [ "$head" = "${commit[$name]}" ] \
      || fail "$name's $branch is at $head, not the checked ${commit[$name]}: set TRITON_BACKEND_SRC to the checked sources"
  done
fi

# common's tests need GTest, which the backend does not; drop them rather than install libgtest-dev.
sed -i '/add_subdirectory(test)/d' "$src/common/src/CMakeLists.txt"

# 2. Configure against the installed torch (headers and lib/ ship in the wheel) and this Python.
torch_dir=$("$py" -c 'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec("torch").origin))')
py_prefix=$("$py" -c 'import sys; print(sys.base_prefix)')
py_include=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
say "[2/3] cmake (torch at $torch_dir)"
cmake -S "$src/pytorch_backend" -B "$out/build" -DCMAKE_BUILD_TYPE=Release \
  -DTRITON_ENABLE_GPU=OFF -DTRITON_PYTORCH_ENABLE_TORCHVISION=OFF \
  "-DTRITON_PYTORCH_INCLUDE_PATHS=$torch_dir/include;$torch_dir/include/torch/csrc/api/include" \
  "-DTRITON_PYTORCH_LIB_PATHS=$torch_dir/lib" \
  "-DFETCHCONTENT_SOURCE_DIR_REPO-COMMON=$src/common" \
  "-DFETCHCONTENT_SOURCE_DIR_REPO-CORE=$src/core" \
  "-DFETCHCONTENT_SOURCE_DIR_REPO-BACKEND=$src/backend" \
  -DFETCHCONTENT_FULLY_DISCONNECTED=ON \
  "-DPython3_ROOT_DIR=$py_prefix" "-DPython3_INCLUDE_DIR=$py_include" >>"$log" 2>&1 \
  || fail_build "cmake failed (see $log)"

# 3. Compile, then keep only the library.
say "[3/3] compiling with -j$jobs"
cmake --build "$out/build" -j"$jobs" >>"$log" 2>&1 || fail_build "compiling failed (see $log)"
[ -f "$out/build/libtriton_pytorch.so" ] || fail_build "the build finished without libtriton_pytorch.so (see $log)"
cp "$out/build/libtriton_pytorch.so" "$lib.tmp"
mv "$lib.tmp" "$lib"
rm -rf "$src" "$out/build"
say "done in $((SECONDS - began)) s: $lib"
