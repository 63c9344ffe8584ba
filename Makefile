# hearth — see README.md. Every target works on a fresh clone with Go installed.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.6.1

.PHONY: build run test e2e bench rag-embeddings lint dist dist-bin dist-ci

build:
	go build -ldflags "$(LDFLAGS)" -o bin/hearth ./cmd/hearth

# The agent on built-in defaults (or ARGS="--config configs/agent.yaml").
run: build
	./bin/hearth agent --log-format text $(ARGS)

test:
	go test -race -count=1 -timeout 15m ./...

# Builds the real Ollama from the Go module proxy (cached), then runs real clients through hearth.
e2e:
	bash e2e/run.sh

bench:
	go run ./bench/overhead
	go run ./bench/cluster
	go run ./bench/relay
	go run ./bench/rag

# Re-embeds bench/rag's dataset with a real model (Universal Sentence Encoder lite on TF.js, npm,
# see bench/rag/realembed/README.md) into the committed RAG_DATASET/vectors-use-lite.jsonl that
# bench/rag and its test read; needs node and npm, unlike every other target. Run it when the
# dataset or the text hearth embeds for a chunk (rag.IndexText) changes.
RAG_DATASET ?= bench/rag/testdata/home
rag-embeddings:
	go run ./bench/rag -dataset $(RAG_DATASET) -dump-texts bench/rag/realembed/texts.tmp.jsonl
	cd bench/rag/realembed && npm ci --no-audit --no-fund
	node bench/rag/realembed/embed.mjs bench/rag/realembed/texts.tmp.jsonl $(RAG_DATASET)/vectors-use-lite.jsonl
	rm -f bench/rag/realembed/texts.tmp.jsonl
	go run ./bench/rag -dataset $(RAG_DATASET) -sizes ""

lint:
	go vet ./...
	go run $(STATICCHECK) ./...

# Release builds into dist/: static binaries (linux amd64/arm64/armv7, darwin arm64), .deb/.rpm
# (nfpm built once into ~/.cache/hearth-dist) and SHA256SUMS. dist-bin skips the packages.
dist:
	VERSION=$(VERSION) COMMIT=$(COMMIT) sh deploy/dist.sh
dist-bin:
	VERSION=$(VERSION) COMMIT=$(COMMIT) DIST_PACKAGES=0 sh deploy/dist.sh
# CI: every target cross-built (only linux/amd64 kept, and packaged), then deploy/check.sh.
dist-ci:
	VERSION=$(VERSION) COMMIT=$(COMMIT) DIST_CI=1 sh deploy/dist.sh
	sh deploy/check.sh dist/hearth-linux-amd64

# The web app's vendored marked and DOMPurify, fetched from npm at pinned versions and checked
# against recorded sha256 sums (internal/webapp/static/vendor/VENDOR.md). Only to change them.
.PHONY: vendor-js
vendor-js:
	bash internal/webapp/vendor-js.sh
