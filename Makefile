# fieldsync build. `make help` lists the targets.

BIN        := $(CURDIR)/bin
BUF        := $(BIN)/buf
DEADCODE   := $(BIN)/deadcode
GO         ?= go

# Pinned code-generation tools, installed from the Go module proxy into ./bin.
BUF_VERSION                := v1.75.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2

# Pinned lint tool, installed the same way: deadcode (golang.org/x/tools),
# which make lint runs over the commands (scripts/deadcode.sh).
DEADCODE_VERSION := v0.53.0

# Against what `make breaking` compares the protocol.
BREAKING_AGAINST ?= .git\#branch=main

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

.PHONY: build
build: ## build every package, and the fieldsync and fieldsyncd commands into ./bin
	$(GO) build ./...
	$(GO) build -o $(BIN)/fieldsync ./cmd/fieldsync
	$(GO) build -o $(BIN)/fieldsyncd ./cmd/fieldsyncd

# The area make run's server serves: a township of the example county, whose
# village 532523100201 the README's quick start and examples/ use.
AREA   ?= 532523100
LISTEN ?= 127.0.0.1:7443

.PHONY: run
run: build ## start a township server on 127.0.0.1:7443 with its data in ./data (Ctrl-C stops it)
	$(BIN)/fieldsyncd serve --data data --listen $(LISTEN) --area $(AREA)

.PHONY: tiers
tiers: build ## run a county (127.0.0.1:7450) and two townships relaying to it (:7451, :7452), data in ./data/tiers
	scripts/tiers.sh

.PHONY: demo
demo: build ## record a generated village on a new device replica (./data) and print the day's questions
	rm -f data/demo-replica.db data/demo-replica.db-wal data/demo-replica.db-shm
	$(BIN)/fieldsync demo --replica data/demo-replica.db

.PHONY: test
test: ## run every test with the race detector, in random order
	$(GO) test -race -shuffle=on ./...

.PHONY: lint
lint: $(BUF) $(DEADCODE) ## gofmt, go vet, deadcode over the commands (scripts/deadcode.sh, .deadcode-allow), buf lint and buf format
	@out=$$(gofmt -l $$(git ls-files '*.go') $$(git ls-files --others --exclude-standard '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	DEADCODE=$(DEADCODE) DEADCODE_VERSION=$(DEADCODE_VERSION) scripts/deadcode.sh
	$(BUF) lint
	$(BUF) format --diff --exit-code

.PHONY: gen
gen: tools ## regenerate the Go code for proto/ with the pinned tools
	rm -f proto/fieldsync/v1/*.pb.go
	$(BUF) generate

.PHONY: check-gen
check-gen: gen ## fail if the committed generated code is stale
	@git add -N proto && git diff --exit-code --stat -- proto || \
	  { echo "generated code in proto/ is stale: run 'make gen' and commit"; exit 1; }

.PHONY: breaking
breaking: $(BUF) ## compare the protocol with main for breaking changes
	$(BUF) breaking --against '$(BREAKING_AGAINST)'

.PHONY: bench
bench: ## run the benchmarks (figures go in the README; the county's take ~20 GB of disk and ~20 minutes)
	$(GO) test -run '^$$' -bench . -benchmem -timeout 120m ./...

.PHONY: tools
tools: $(BUF) $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc ## install the pinned code-generation tools into ./bin

$(BUF):
	GOBIN=$(BIN) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(BIN)/protoc-gen-go-grpc:
	GOBIN=$(BIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
$(DEADCODE):
	GOBIN=$(BIN) $(GO) install golang.org/x/tools/cmd/deadcode@$(DEADCODE_VERSION)
