#!/bin/sh
# dist.sh — release builds into dist/: static binaries for linux/amd64, linux/arm64,
# linux/armv7 (GOARM=7) and darwin/arm64, install.sh with the service files beside them,
# .deb and .rpm packages for the Linux ones (nfpm, built once from the Go module proxy into a
# cache), and SHA256SUMS.
#   VERSION=v1.2.3 COMMIT=abc sh deploy/dist.sh
#   DIST_PACKAGES=0   no packages
#   DIST_CI=1         what CI needs, as cheaply as it comes: every target is cross-built, but only
#                     linux/amd64 is written (the others go to /dev/null) and packaged
#   DIST_CACHE=DIR    where the nfpm binary is kept (default ~/.cache/hearth-dist)
set -eu
cd "$(dirname "$0")/.."
VERSION=${VERSION:-dev}
COMMIT=${COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}
NFPM_VERSION=v2.48.0
NFPM_PKG=github.com/goreleaser/nfpm/v2/cmd/nfpm
DIST_PACKAGES=${DIST_PACKAGES:-1}
DIST_CI=${DIST_CI:-0}
DIST_CACHE=${DIST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth-dist}
out=dist

# -trimpath: no build paths in the binaries; -s -w: no symbol table nor DWARF (smaller, and a
# shorter link). CGO_ENABLED=0: static.
build() { # build OS ARCH OUTPUT
	goarch=$2
	goarm=
	if [ "$2" = armv7 ]; then goarch=arm; goarm=7; fi
	CGO_ENABLED=0 GOOS=$1 GOARCH=$goarch GOARM=$goarm go build -trimpath \
		-ldflags "-s -w -X main.version=$VERSION -X main.commit=$COMMIT" -o "$3" ./cmd/hearth
}

# nfpm is built from source once per version and kept in DIST_CACHE: a second `make dist`
# (and every packaging below) runs the cached binary instead of `go run`, which would link it
# again each time. It is built with hearth's linux/amd64 flags (CGO_ENABLED=0, -trimpath), so
# that the standard library compiled for one serves the other from the build cache.
nfpm_bin() {
	bin="$DIST_CACHE/nfpm-$NFPM_VERSION"
	if ! "$bin" --version >/dev/null 2>&1; then
		echo "building nfpm $NFPM_VERSION into $DIST_CACHE (once)" >&2
		mkdir -p "$DIST_CACHE"
		tmpbin=$(mktemp -d "$DIST_CACHE/.build.XXXXXX")
		CGO_ENABLED=0 GOBIN=$tmpbin go install -trimpath "$NFPM_PKG@$NFPM_VERSION" >&2
		mv -f "$tmpbin/nfpm" "$bin"
		rmdir "$tmpbin"
	fi
	echo "$bin"
}

rm -rf "$out"
mkdir -p "$out"
packaged="amd64 arm64 armv7"
for target in linux/amd64 linux/arm64 linux/armv7 darwin/arm64; do
	os=${target%/*}
	arch=${target#*/}
	dest="$out/hearth-$os-$arch"
	if [ "$DIST_CI" = 1 ] && [ "$target" != linux/amd64 ]; then
		dest=/dev/null
	fi
	echo "building $target -> $dest"
	build "$os" "$arch" "$dest"
done
if [ "$DIST_CI" = 1 ]; then packaged=amd64; fi
cp deploy/install.sh "$out/"
cp -R deploy/systemd deploy/launchd "$out/"

if [ "$DIST_PACKAGES" != 0 ]; then
	# Debian and RPM versions must start with a digit: a tag v1.2.3 gives 1.2.3, anything else
	# 0.0.0~git<commit>.
	case "$VERSION" in
	v[0-9]*) pkgversion=${VERSION#v} ;;
	*) pkgversion="0.0.0~git$COMMIT" ;;
	esac
	nfpm=$(nfpm_bin)
	for arch in $packaged; do
		pkgarch=$arch
		if [ "$arch" = armv7 ]; then pkgarch=arm7; fi
		mkdir -p "$out/pkg"
		cp "$out/hearth-linux-$arch" "$out/pkg/hearth"
		for packager in deb rpm; do
			PKG_ARCH=$pkgarch PKG_VERSION=$pkgversion \
				"$nfpm" package --config deploy/packaging/nfpm.yaml --packager "$packager" --target "$out/"
		done
	done
	rm -rf "$out/pkg"
fi

(cd "$out" && find . -maxdepth 1 -type f \( -name 'hearth-*' -o -name '*.deb' -o -name '*.rpm' \) | sed 's|^\./||' | sort | xargs sha256sum >SHA256SUMS)
echo "wrote $out/SHA256SUMS:"
cat "$out/SHA256SUMS"
