#!/bin/sh
# dist.sh — release builds into dist/: static binaries for linux/amd64, linux/arm64,
# linux/armv7 (GOARM=7) and darwin/arm64, install.sh with the service files beside them,
# .deb and .rpm packages for the Linux ones (nfpm, installed from the Go module proxy), and SHA256SUMS.
#   VERSION=v1.2.3 COMMIT=abc sh deploy/dist.sh     DIST_PACKAGES=0 skips the packages.
set -eu
cd "$(dirname "$0")/.."
VERSION=${VERSION:-dev}
COMMIT=${COMMIT:-unknown}
NFPM=${NFPM:-github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0}
DIST_PACKAGES=${DIST_PACKAGES:-1}
out=dist

rm -rf "$out"
mkdir -p "$out"
for target in linux/amd64 linux/arm64 linux/armv7 darwin/arm64; do
	os=${target%/*}
	arch=${target#*/}
	goarch=$arch
	goarm=
	if [ "$arch" = armv7 ]; then goarch=arm; goarm=7; fi
	echo "building $out/hearth-$os-$arch"
	CGO_ENABLED=0 GOOS=$os GOARCH=$goarch GOARM=$goarm go build -trimpath \
		-ldflags "-s -w -X main.version=$VERSION -X main.commit=$COMMIT" -o "$out/hearth-$os-$arch" ./cmd/hearth
done
cp deploy/install.sh "$out/"
cp -R deploy/systemd deploy/launchd "$out/"

if [ "$DIST_PACKAGES" != 0 ]; then
	# Debian and RPM versions must start with a digit: a tag v1.2.3 gives 1.2.3, anything else
	# 0.0.0~git<commit>.
	case "$VERSION" in
	v[0-9]*) pkgversion=${VERSION#v} ;;
	*) pkgversion="0.0.0~git$COMMIT" ;;
	esac
	nfpmdir=$(mktemp -d)
	trap 'rm -rf "$nfpmdir"' EXIT
	GOBIN=$nfpmdir go install "$NFPM"
	for arch in amd64 arm64 armv7; do
		pkgarch=$arch
		if [ "$arch" = armv7 ]; then pkgarch=arm7; fi
		mkdir -p "$out/pkg"
		cp "$out/hearth-linux-$arch" "$out/pkg/hearth"
		for packager in deb rpm; do
			PKG_ARCH=$pkgarch PKG_VERSION=$pkgversion \
				"$nfpmdir/nfpm" package --config deploy/packaging/nfpm.yaml --packager "$packager" --target "$out/"
		done
	done
	rm -rf "$out/pkg"
fi

(cd "$out" && find . -maxdepth 1 -type f \( -name 'hearth-*' -o -name '*.deb' -o -name '*.rpm' \) | sed 's|^\./||' | sort | xargs sha256sum >SHA256SUMS)
echo "wrote $out/SHA256SUMS:"
cat "$out/SHA256SUMS"
