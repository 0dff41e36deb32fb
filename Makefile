# Two entry points for a fresh machine (see README): `make run` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
RAG    := $(VENV)/bin/rag
INDEX  ?= indexes/default
QUESTION ?= who wrote the theory of relativity
SHARED ?= ../shared/data

.PHONY: run setup index wiki wiki-quarter browser test test-all clean reader retriever retriever-wiki reranker

# Set up, build the default index over the built-in Wikipedia corpus if missing (~4 min on 2 cores),
# answer a question with the shipped reader: the answer, its probability and the passages it came from.
run: setup index
	$(RAG) ask "$(QUESTION)" --index $(INDEX) -k 10

setup: $(VENV)/.installed

# torch is pinned here, not in pyproject: 2.13.0 is the CPU build this machine installs from disk.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $@

index: setup
	@test -f $(INDEX)/manifest.json || $(RAG) index build --corpus default --out $(INDEX)

# indexes/wiki2015: the 30,539 full articles of ../shared's 2015 WikiExtractor extract (~655k passages), dense + BM25.
# Resumable: rerun after a kill and it goes on from the last finished shard. Its cost per phase is in the README.
WIKI_CORPUS ?= $(SHARED)/wikipedia/enwiki-2015-wikiextractor
WIKI_INDEX  ?= indexes/wiki2015
wiki: setup
	$(RAG) index build --corpus $(WIKI_CORPUS) --out $(WIKI_INDEX) --encoder rag-retriever-wiki

# indexes/wiki2015-quarter: the extract's first folder (AA, 6,507 articles, 163,071 passages; ~29 min on 2 AMD EPYC cores),
# the Wikipedia passages the shipped reader's open-domain stage reads beside the built-in corpus.
WIKI_QUARTER_INDEX ?= indexes/wiki2015-quarter
wiki-quarter: setup
	@test -f $(WIKI_QUARTER_INDEX)/manifest.json || $(RAG) index build --corpus $(WIKI_CORPUS)/AA --out $(WIKI_QUARTER_INDEX) --encoder rag-retriever-wiki

# Debian's chromium, which the demo's browser test drives through playwright (no browser download).
# Never fails the run: where apt-get cannot install it, that test skips and says why.
browser:
	@test -x /usr/bin/chromium || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) \
		|| echo "make: could not install chromium with apt-get; the browser test will be skipped" >&2

test: setup browser
	$(PY) -m pytest -m "not slow" -q

test-all: setup browser
	$(PY) -m pytest -q

# The shipped span reader (models/reader v5, see its README.md) from ../shared/data/squad: 0.75 epoch, then 0.4 more
# at half the learning rate, then 0.2 with open-domain training questions over indexes/default and indexes/wiki2015-quarter
# (`make index wiki-quarter`); ~3 h on 2 CPU cores (bf16). Every run resumes after a kill.
reader: index wiki-quarter
	$(RAG) train reader --squad $(SHARED)/squad/train-v1.1.rebuilt.json.gz --out checkpoints/reader-squad --epochs 0.75 --save-every 300
	$(RAG) train reader --squad $(SHARED)/squad/train-v1.1.rebuilt.json.gz --out checkpoints/reader-squad-2 --start-from checkpoints/reader-squad/reader \
		--epochs 0.4 --lr 5e-5 --seed 1 --save-every 200
	$(RAG) train reader --squad $(SHARED)/squad/train-v1.1.rebuilt.json.gz --out checkpoints/reader-od-5 --start-from checkpoints/reader-squad-2/reader \
		--questions $(RETRIEVER_QUESTIONS) --index $(INDEX),$(WIKI_QUARTER_INDEX) --questions-repeat 2 --epochs 0.2 --lr 5e-5 --seed 5 --save-every 200
	$(RAG) export-reader checkpoints/reader-od-5/reader --out models/reader

# The shipped retriever (models/retriever, see its README.md): the query tower trained on DPR's NQ dev and TriviaQA dev
# topics and WebQuestions train against indexes/default's MiniLM passage vectors, ~15 min on 2 CPU cores (bf16).
RETRIEVER_QUESTIONS := $(SHARED)/nq-open/topics.dpr.nq.dev.txt,$(SHARED)/triviaqa/topics.dpr.trivia.dev.txt,$(SHARED)/webquestions/trainmodel.json
retriever: index
	$(RAG) train retriever --questions $(RETRIEVER_QUESTIONS) --index $(INDEX) --out checkpoints/retriever --epochs 8 --lr 5e-5
	mkdir -p models/retriever && cp -r checkpoints/retriever/encoder/. models/retriever/

# The Wikipedia query tower (models/retriever-wiki): the same questions against indexes/wiki2015 (`make wiki` first), ~40 min on 2 CPU cores.
retriever-wiki:
	$(RAG) train retriever --questions $(RETRIEVER_QUESTIONS) --index $(WIKI_INDEX) --out checkpoints/retriever-wiki --epochs 3 --lr 5e-5
	mkdir -p models/retriever-wiki && cp -r checkpoints/retriever-wiki/encoder/. models/retriever-wiki/

# The shipped reranker (models/reranker, see its README.md): the shipped span reader's selection head and encoder trained
# on the default pipeline's top 30 for the same questions (less the retriever's held-out 5%), one epoch, ~26 min on 2 CPU cores (bf16).
reranker: index
	$(RAG) train reranker --questions $(RETRIEVER_QUESTIONS) --index $(INDEX) --out checkpoints/reranker --holdout 0.05 --max-length 128 --save-every 200
	$(RAG) export-reader checkpoints/reranker/reranker --out models/reranker

clean:
	rm -rf $(VENV) indexes/*/ eval/out tests/artifacts
