# matrixd: `make demo` and `make test` do all set-up on a fresh machine.
BUN := node_modules/.bin/bun
TSC := node_modules/.bin/tsc
APT_PACKAGES := nats-server redis-server bubblewrap docker.io busybox-static chromium openssl prometheus
SOURCES := $(shell find cmd src plugins -name '*.ts' -o -name '*.js' -o -name '*.css') package.json

.PHONY: setup system build demo test lint bench seeds clean

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

setup: node_modules/.installed

# Servers the tests start for real (nats-server, redis, dockerd, bwrap, chromium, prometheus and promtool).
system:
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "install these Debian packages first:$$missing"; exit 1; fi; \
	fi

dist/matrixd: node_modules/.installed $(SOURCES)
	$(BUN) build --compile --minify --sourcemap cmd/matrixd.ts --outfile dist/matrixd

build: dist/matrixd

seeds: setup
	$(BUN) configs/gen/coral.ts 3000 configs/seeds/coral.jsonl

demo: build
	@mkdir -p out
	dist/matrixd run --workflow coral --seeds configs/seeds/coral.jsonl --out out/coral.jsonl --llm sim --config configs/coral.yaml
	@echo; echo "dataset: out/coral.jsonl ($$(wc -l < out/coral.jsonl) rows); its first row:"
	@head -n 1 out/coral.jsonl | $(BUN) -e 'const r = JSON.parse(await Bun.stdin.text()); r.history = `[$${r.history.length} turns: see the file]`; console.log(JSON.stringify(r, null, 2))'

test: setup system build
	$(BUN) test --timeout 120000

lint: setup
	$(TSC) --noEmit -p .

# make bench [SCENARIO=reasoning-extract|tool-use] (coral by default)
bench: build
	$(BUN) bench/main.ts $(SCENARIO)

clean:
	rm -rf dist out
