#!/usr/bin/env bash
# Builds kube-apiserver and kube-controller-manager from Debian's own Kubernetes source package.
#
# The local target needs a real control plane, and no prebuilt one can be downloaded here.
# Lookup order (like controller-runtime's envtest):
#   1. KUBE_APISERVER and KUBE_CONTROLLER_MANAGER point at executables -> nothing to build;
#   2. the cache holds binaries built by this very recipe -> nothing to build;
#   3. build them (~4 minutes, ~1.7 GB RAM) into the cache.
# Cache: $MMS_CACHE_DIR/kube/<version>/ (default ~/.cache/mms-notebooks), outside the repo, with
# a RECIPE file holding this script's hash: a changed recipe (a new patch) rebuilds once.
set -euo pipefail

if [ -x "${KUBE_APISERVER:-}" ] && [ -x "${KUBE_CONTROLLER_MANAGER:-}" ]; then
  echo "build-kube: using KUBE_APISERVER=$KUBE_APISERVER and KUBE_CONTROLLER_MANAGER=$KUBE_CONTROLLER_MANAGER"
  exit 0
fi

# Debian bookworm's package: upstream 1.20.2, versioned 1.20.5+really1.20.2.
KUBE_VERSION=1.20.2
cache="${MMS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mms-notebooks}"
out="$cache/kube/v$KUBE_VERSION"
# One build at a time: a second `make setup` waits here, then finds the cache filled.
mkdir -p "$cache/kube"
exec 9>"$cache/kube/.lock"
flock -n 9 || { echo "build-kube: another build is running; waiting for it"; flock 9; }
recipe=$(sha256sum "$0" | cut -c1-16)
if [ -x "$out/kube-apiserver" ] && [ -x "$out/kube-controller-manager" ] \
    && [ "$(cat "$out/RECIPE" 2>/dev/null)" = "$recipe" ]; then
  echo "build-kube: cached in $out"
  exit 0
fi

die() { echo "build-kube: $*" >&2; exit 1; }
GO=/usr/lib/go-1.19/bin/go
[ -x "$GO" ] || die "Go 1.19 not found at $GO: install the Debian package golang-1.19-go (make setup does, as root)"
REFLECT2=/usr/share/gocode/src/github.com/modern-go/reflect2
[ -d "$REFLECT2" ] || die "reflect2 1.0.2 not found at $REFLECT2: install golang-github-modern-go-reflect2-dev"
command -v dpkg-source >/dev/null || die "dpkg-source not found: install dpkg-dev"

work="$cache/kube/build"
log="$cache/kube/build.log"
mkdir -p "$work" "$out"
echo "build-kube: building Kubernetes v$KUBE_VERSION into $out (about 4 minutes; log: $log)"
: >"$log"

# 1. Source: Debian's sources list is deb822; deb-src must be enabled for `apt-get source`.
if ! ls "$work"/kubernetes_*.orig.tar.* >/dev/null 2>&1; then
  if ! apt-get source --print-uris kubernetes >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "deb-src entries are not enabled and this is not root: enable them, then run again"
    for f in /etc/apt/sources.list.d/debian.sources; do
      [ -f "$f" ] && sed -i 's/^Types: deb$/Types: deb deb-src/' "$f"
    done
    apt-get update -qq >>"$log" 2>&1
  fi
  echo "build-kube: [1/4] downloading the source package"
  (cd "$work" && apt-get source --download-only kubernetes >>"$log" 2>&1) \
    || die "apt-get source kubernetes failed (see $log)"
fi
orig=$(ls "$work"/kubernetes_*.orig.tar.* | head -n1)

# 2. A GOPATH tree: Kubernetes 1.20 predates modules being the only way.
export GOPATH="$work/gopath" GO111MODULE=off GOFLAGS= GOCACHE="$cache/kube/go-build"
src="$GOPATH/src/k8s.io/kubernetes"
if [ ! -f "$src/cmd/kube-apiserver/apiserver.go" ]; then
  echo "build-kube: [2/4] unpacking $(basename "$orig")"
  rm -rf "$src" && mkdir -p "$src"
  tar -xf "$orig" -C "$src" --strip-components=1
  # Go 1.19 needs reflect2 1.0.2; the vendored 1.0.1 does not compile with it.
  rm -rf "$src/vendor/github.com/modern-go/reflect2"
  cp -r "$REFLECT2" "$src/vendor/github.com/modern-go/reflect2"
fi
cd "$src"

# Under Go >= 1.19, reflect.Zero and a boxed "" share the runtime's zero value, so the two vendored
# OpenAPI validators' null test (`data == nil || DeepEqual(Zero, value)`) holds for "" and every "" in a
# custom resource gets 422 'must be of type string: "null"'. Upstream built 1.20 with Go 1.15,
# where it never held; `data == nil` is what the test means. Idempotent, and checked.
null_test='if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {'
for f in vendor/github.com/go-openapi/validate/type.go \
         vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go; do
  sed -i "s/$null_test/if data == nil {/" "$f"
  grep -q 'if data == nil {' "$f" || die "the null test in $f was not patched (has the source changed?)"
done

# 3. The OpenAPI definitions are generated, not shipped in the tarball.
# A build stopped half-way can leave an empty file behind: only a complete one (marked) counts.
if [ ! -f pkg/generated/openapi/.complete ]; then
  echo "build-kube: [3/4] generating OpenAPI definitions"
  rm -f pkg/generated/openapi/zz_generated.openapi.go
  "$GO" build -o "$work/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen >>"$log" 2>&1 \
    || die "building openapi-gen failed (see $log)"
  # -R: vendor/k8s.io/* are symlinks into staging/, which -r would not follow.
  inputs=$(grep -Rl --include='*.go' '+k8s:openapi-gen=' pkg cmd vendor/k8s.io \
      | grep -v -e 'code-generator' -e 'sample-apiserver' \
      | xargs -n1 dirname | sort -u | sed 's|^|k8s.io/kubernetes/|' | paste -sd, -)
  "$work/openapi-gen" --input-dirs "$inputs" \
    --output-package k8s.io/kubernetes/pkg/generated/openapi \
    --output-base "$GOPATH/src" -O zz_generated.openapi \
    --go-header-file hack/boilerplate/boilerplate.generatego.txt >>"$log" 2>&1 \
    || die "openapi-gen failed (see $log)"
  touch pkg/generated/openapi/.complete
fi

# 4. The two binaries, with the version they report (`kubectl version` shows it).
# Both packages carry a copy of the version (hack/lib/version.sh sets both); /version reads client-go's.
ldflags="-s -w"
for vpkg in k8s.io/kubernetes/vendor/k8s.io/component-base/version k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $vpkg.gitVersion=v$KUBE_VERSION -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=20 -X $vpkg.gitTreeState=clean"
done
for cmd in kube-apiserver kube-controller-manager; do
  echo "build-kube: [4/4] go build $cmd"
  "$GO" build -ldflags "$ldflags" -o "$out/$cmd.tmp" "./cmd/$cmd" >>"$log" 2>&1 \
    || die "go build $cmd failed (see $log)"
  mv "$out/$cmd.tmp" "$out/$cmd"
done
echo "$recipe" >"$out/RECIPE"
# The binaries are cached; the source tree and Go build cache (~1.3 GB) are not needed again.
rm -rf "$GOPATH" "$work/openapi-gen" "$GOCACHE"
echo "build-kube: done: $out"
