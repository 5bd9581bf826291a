#!/usr/bin/env bash
# Builds Triton's own TensorFlow backend, libtriton_tensorflow.so, against the installed pip
# tensorflow-cpu wheel.
#
# Without it the local Triton serves TensorFlow GraphDef models (04_inception) through a
# Python-based backend (one python stub process per model instance, ~635 MiB each, 4-6 s to load
# the inception stand-in); with it, in Triton's own process (~0.4 s, and the log reads as a
# cluster's). Nothing breaks when this build cannot run: `make setup` goes on, and
# `python -m helpers.local status` says which backend serves GraphDef.
#
# Release branch r24.10 matches the tritonserver 2.51 in the nvidia-pytriton wheel. The four
# sources are taken, in this order, from:
#   1. TRITON_BACKEND_SRC: a folder holding the four tarballs (<repo>-r24.10.tar.gz) or trees (<repo>/);
#   2. MMS_TRITON_THIRD_PARTY, default ../shared/third_party/triton-r24.10 next to the checkout;
#   3. `git clone --depth 1 --branch r24.10` of each upstream repository (needs the internet).
# Tarballs must match the sha256s below and clones the commits below (both from that folder's
# README.md); a tree given in TRITON_BACKEND_SRC is used as it is.
#
# The backend calls a TRITONTF_* C API that NVIDIA compiles into its own TensorFlow; the wheel
# lacks it. scripts/patches/tensorflow_backend-r24.10-pip-tensorflow.patch (this project's own,
# applied here) compiles the repository's reference source of that API into the backend instead,
# CPU only, against the wheel's headers; its header says what it changes and why.
#
# Cache: $MMS_CACHE_DIR/triton-tensorflow/<recipe>/ (default ~/.cache/mms-notebooks), outside the
# repo; <recipe> hashes this script, the patch and the TensorFlow version it was built against, so
# a changed recipe or another TensorFlow builds once more. helpers/local/stack/tf_backend.py computes the
# same hash to find it. A build that cannot run leaves a FAILED file there with the reason, which
# `status` quotes. One that ran and failed (patch, cmake or the compiler) would fail alike next
# time: it is not retried on every `make setup` until its .failed-build marker is removed; missing
# tools or sources are retried.
#
# Settings: TF_PYTHON (the interpreter whose tensorflow is used; default .venv/bin/python),
# MMS_BUILD_JOBS (parallel compile jobs; default 1: ~45 s on 2 cores, ~0.9 GB RAM).
set -euo pipefail

repo_root=$(cd "$(dirname "$0")/.." && pwd)
script="$repo_root/scripts/build-triton-tensorflow.sh"
patch_file="$repo_root/scripts/patches/tensorflow_backend-r24.10-pip-tensorflow.patch"
py="${TF_PYTHON:-$repo_root/.venv/bin/python}"
jobs="${MMS_BUILD_JOBS:-1}"
branch=r24.10
repos=(tensorflow_backend backend core common)
declare -A commit=(
  [tensorflow_backend]=e4fe6b8dae858a30c4ac7fe9cfc4987b89d4d258
  [backend]=ac03a5d97403dec841ad46d0439e93db12c9268f
  [core]=bfec7c61dc0939433f64f14e89b1973073eac8ba
  [common]=578491fc3944f77d16a6a38e3d7691c485c47ba0
)
declare -A tarball_sha256=(
  [tensorflow_backend]=6a8b5feee3985cf62f9985169c101161709af3705c3cd3303c2aedc2ffa93777
  [backend]=151da6fa28fbece76c7357a72e089768d4322e2382cce8b6b578424a82b4987a
  [core]=a77d172b45f5582fa6a089c894d003cdcd6e81f57d941a196eb4ca93ff7d8a63
  [common]=f8d42fac07949257d938261d3330ced625b33829ac02bac37fa837a4c6f6c57c
)

say() { echo "build-triton-tensorflow: $*"; }
cache="${MMS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mms-notebooks}/triton-tensorflow"
mkdir -p "$cache"

[ -x "$py" ] || { say "no Python at $py (run it from make setup, or set TF_PYTHON)" >&2; exit 1; }
[ -f "$patch_file" ] || { say "the patch $patch_file is missing from this checkout" >&2; exit 1; }
# The distribution that installs the `tensorflow` package (tensorflow-cpu here, or tensorflow), read
# without importing it.
tf_version=$("$py" -c '
import importlib.metadata as m
names = m.packages_distributions().get("tensorflow") or []
print(m.version(names[0]))' 2>/dev/null) \
  || { say "tensorflow is not installed in $py: nothing to build against" >&2; exit 1; }
recipe=$({ cat "$script" "$patch_file"; printf 'tensorflow=%s\n' "$tf_version"; } | sha256sum | cut -c1-16)
out="$cache/$recipe"
lib="$out/libtriton_tensorflow.so"
log="$out/build.log"
mkdir -p "$out"

# One build at a time: a second `make setup` waits here, then finds the cache filled.
exec 9>"$cache/.lock"
flock -n 9 || { say "another build is running; waiting for it"; flock 9; }
if [ -f "$lib" ]; then
  say "cached in $out (tensorflow $tf_version)"
  exit 0
fi
if [ -f "$out/.failed-build" ]; then
  say "not retried: this recipe failed to build against tensorflow $tf_version before: $(cat "$out/FAILED" 2>/dev/null)" >&2
  say "remove $out/.failed-build to try again; GraphDef models use the Python-based backend meanwhile" >&2
  exit 1
fi

# Every way out from here on that is not a built library leaves its reason in FAILED.
rm -f "$out/FAILED"
fail() {
  echo "$*" >"$out/FAILED"
  say "$*" >&2
  say "TensorFlow GraphDef models will be served by the Python-based backend instead" >&2
  exit 1
}
fail_build() { touch "$out/.failed-build"; fail "$@"; }

missing=()
for tool in cmake g++ make patch; do command -v "$tool" >/dev/null || missing+=("$tool"); done
[ -f /usr/include/rapidjson/document.h ] || missing+=("rapidjson-dev")
[ ${#missing[@]} -eq 0 ] \
  || fail "cannot build: missing ${missing[*]} (Debian: apt-get install cmake g++ patch rapidjson-dev; make setup does, as root)"

began=$SECONDS
say "building libtriton_tensorflow.so ($branch) against tensorflow $tf_version into $out (about 1 minute; log: $log)"
: >"$log"
src="$out/src"
rm -rf "$src" "$out/build" "$out/tflib"
mkdir -p "$src"

# 1. The four sources, then the project's patch.
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
  say "[1/4] sources from TRITON_BACKEND_SRC=$TRITON_BACKEND_SRC"
  from_folder "$TRITON_BACKEND_SRC" \
    || fail "TRITON_BACKEND_SRC=$TRITON_BACKEND_SRC does not hold all of ${repos[*]} (as <repo>-$branch.tar.gz or <repo>/)"
elif [ -d "$third_party" ]; then
  say "[1/4] sources from $third_party (sha256 checked)"
  from_folder "$third_party" || fail "$third_party does not hold all of ${repos[*]} as <repo>-$branch.tar.gz"
else
  say "[1/4] sources: no local copy at $third_party; cloning $branch from GitHub"
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
[ -f "$src/common/src/CMakeLists.txt" ] && sed -i '/add_subdirectory(test)/d' "$src/common/src/CMakeLists.txt"
say "[2/4] applying $(basename "$patch_file")"
patch -d "$src/tensorflow_backend" -p1 --forward --batch <"$patch_file" >>"$log" 2>&1 \
  || fail_build "the patch $(basename "$patch_file") does not apply to these tensorflow_backend sources (see $log)"

# 3. Configure against the installed tensorflow: its headers ship in the wheel's include/, its two
# libraries only as *.so.2, so -l gets a folder of unversioned links. TensorFlow's own compile
# flags (ABI, Eigen alignment) come from tf.sysconfig, minus -I/--std, which cmake sets.
tf_dir=$("$py" -c 'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec("tensorflow").origin))')
mkdir -p "$out/tflib"
for name in libtensorflow_cc libtensorflow_framework; do
  [ -f "$tf_dir/$name.so.2" ] || fail_build "the tensorflow wheel at $tf_dir has no $name.so.2 to link against"
  ln -sf "$tf_dir/$name.so.2" "$out/tflib/$name.so"
done
tf_flags=$(TF_CPP_MIN_LOG_LEVEL=2 "$py" -c '
import tensorflow as tf
print(";".join(f for f in tf.sysconfig.get_compile_flags() if f.startswith("-D")))' 2>>"$log") \
  || fail_build "reading tf.sysconfig.get_compile_flags() failed (see $log)"
say "[3/4] cmake (tensorflow at $tf_dir, flags $tf_flags)"
cmake -S "$src/tensorflow_backend" -B "$out/build" -DCMAKE_BUILD_TYPE=Release \
  -DTRITON_ENABLE_GPU=OFF -DTRITON_TENSORFLOW_VERSION=2 \
  "-DTRITON_TENSORFLOW_INCLUDE_PATHS=$tf_dir/include" \
  "-DTRITON_TENSORFLOW_LIB_PATHS=$out/tflib" \
  "-DTRITON_TENSORFLOW_CXX_FLAGS=$tf_flags" \
  "-DCMAKE_SHARED_LINKER_FLAGS=-Wl,-z,defs" \
  "-DFETCHCONTENT_SOURCE_DIR_REPO-COMMON=$src/common" \
  "-DFETCHCONTENT_SOURCE_DIR_REPO-CORE=$src/core" \
  "-DFETCHCONTENT_SOURCE_DIR_REPO-BACKEND=$src/backend" \
  -DFETCHCONTENT_FULLY_DISCONNECTED=ON >>"$log" 2>&1 \
  || fail_build "cmake failed (see $log)"

# 4. Compile (-z defs: a symbol the wheel does not export fails here, not when Triton loads it),
# then keep only the library.
say "[4/4] compiling with -j$jobs"
cmake --build "$out/build" -j"$jobs" >>"$log" 2>&1 || fail_build "compiling failed (see $log)"
[ -f "$out/build/libtriton_tensorflow.so" ] || fail_build "the build finished without libtriton_tensorflow.so (see $log)"
cp "$out/build/libtriton_tensorflow.so" "$lib.tmp"
mv "$lib.tmp" "$lib"
rm -rf "$src" "$out/build" "$out/tflib"
say "done in $((SECONDS - began)) s: $lib"
