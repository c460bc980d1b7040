GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X github.com/migrated/migrated/internal/metrics.Version=$(VERSION)
BIN       := bin/migrated

.PHONY: build test test-short bench demo lint clean

## build: the static binary, the same command the Dockerfile runs
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/migrated

## test: every test, with real PostgreSQL and MariaDB servers started by the tests, under -race
test:
	$(GO) test -race -count=1 -timeout 40m ./...

## test-short: unit tests only
test-short:
	$(GO) test -short -count=1 ./...

## bench: speed and memory beside the peer tools, printed as ratios
bench: build
	@bench/install.sh
	$(GO) run ./bench $(BENCHFLAGS)

## demo: a live migration of a generated dataset between two throwaway servers: PostgreSQL, or
## MariaDB with DEMO=mysql
demo_deps := $(if $(filter mysql,$(DEMO)),mariadb-server,postgresql-15 postgresql-client-15)
demo: build
	@scripts/install-deps.sh $(demo_deps)
	$(BIN) demo $(if $(DEMO),--engine $(DEMO)) $(DEMOFLAGS)

lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || (gofmt -l . && exit 1)

clean:
	rm -rf bin
