// nlakit viewer: documents as token sequences coloured by reconstruction error,
// filters, keyboard navigation, runs side by side, JSON export.
// Every string from the data reaches the page as text (textContent, text nodes), never as markup.
"use strict";
(async () => {
  const t0 = performance.now();
  let D;
  try {  // the data block is base64 of gzipped JSON (see nlakit/viewer/page.py)
    const packed = atob(document.getElementById("nla-data").textContent);
    const bytes = new Uint8Array(packed.length);
    for (let k = 0; k < packed.length; k++) bytes[k] = packed.charCodeAt(k);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    D = JSON.parse(await new Response(stream).text());
  } catch (error) {
    document.getElementById("status").textContent = "Cannot read this page's data (" + error
      + "). The viewer needs a browser with DecompressionStream: Chrome 80+, Firefox 113+, Safari 16.4+.";
    return;
  }
  const t1 = performance.now();
  const R = D.rows, S = D.scores, RUNS = D.runs, N = R.doc.length;
  const PAGE_DOCS = 40, PAGE_TOKENS = 100, CONTEXT_TAIL = 400;
  const VERDICTS = {t: "true", f: "false", a: "absent"};
  const BUCKET_NAMES = ["lowest 20%", "20–40%", "40–60%", "60–80%", "highest 20%"];
  const $ = (id) => document.getElementById(id);

  const state = {query: "", source: -1, type: -1, bucket: -1, run: 0, scale: "own", sort: "doc", page: 0, selected: -1};
  let order = [];                    // matching rows, in display order
  const rank = new Int32Array(N);     // row → its index in `order`, -1 when filtered out
  const docPage = new Int32Array(D.docs.id.length);  // doc → its index among matching docs
  let matchingDocs = [];

  // Lower-case explanations of every run, one string per row, for the free-text search.
  const haystack = new Array(N);
  for (let i = 0; i < N; i++) {
    let text = "";
    for (const s of S) if (s.explanation[i]) text += s.explanation[i].toLowerCase() + "\n";
    haystack[i] = text;
  }
  // Each document's rows are contiguous (rows are sorted by document, then position).
  const docFirst = new Int32Array(D.docs.id.length).fill(-1), docLast = new Int32Array(D.docs.id.length);
  for (let i = 0; i < N; i++) { if (docFirst[R.doc[i]] < 0) docFirst[R.doc[i]] = i; docLast[R.doc[i]] = i; }

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  const fmt = (x, digits = 3) => (x === null || x === undefined ? "—" : Number(x).toFixed(digits));
  const signed = (x) => (x === null || x === undefined ? "—" : (x >= 0 ? "+" : "") + x.toFixed(3));
  // The colour bucket of row i in run r: its quintile within the run, or on the shared scale.
  const bucketOf = (r, i) => (state.scale === "shared" ? S[r].shared_bucket[i] : S[r].bucket[i]);
  const visible = (token) => token.replace(/\n/g, "↵").replace(/\t/g, "⇥").replace(/^ /, "␣");

  // ------------------------------------------------------------------ filters and order

  function matches(i) {
    if (state.source >= 0 && R.source[i] !== state.source) return false;
    if (state.type >= 0 && R.type[i] !== state.type) return false;
    const scores = S[state.run];
    if (scores.mse_nrm[i] === null) return false;
    if (state.bucket >= 0 && bucketOf(state.run, i) !== state.bucket) return false;
    if (state.query && haystack[i].indexOf(state.query) < 0) return false;
    return true;
  }

  function applyFilters() {
    order = [];
    for (let i = 0; i < N; i++) if (matches(i)) order.push(i);
    if (state.sort !== "doc") {
      const mse = S[state.run].mse_nrm, sign = state.sort === "asc" ? 1 : -1;
      order.sort((a, b) => sign * (mse[a] - mse[b]) || a - b);
    }
    rank.fill(-1);
    order.forEach((row, k) => { rank[row] = k; });
    matchingDocs = [];
    docPage.fill(-1);
    for (const row of order) {
      const doc = R.doc[row];
      if (docPage[doc] < 0) { docPage[doc] = matchingDocs.length; matchingDocs.push(doc); }
    }
    state.page = 0;
    if (state.selected >= 0 && rank[state.selected] >= 0) state.page = pageOf(state.selected);
    renderList();
    renderStatus();
  }

  const pageCount = () => Math.max(1, Math.ceil(
    (state.sort === "doc" ? matchingDocs.length / PAGE_DOCS : order.length / PAGE_TOKENS)));
  const pageOf = (row) => Math.floor(
    state.sort === "doc" ? docPage[R.doc[row]] / PAGE_DOCS : rank[row] / PAGE_TOKENS);

  // ------------------------------------------------------------------ the list

  function tokenSpan(i) {
    const doc = R.doc[i], text = D.docs.text[doc].slice(R.start[i], R.end[i]);
    const span = el("span", "tok");
    span.dataset.row = String(i);
    if (text.length === 0) {  // the context does not end with the token: show the token
      if (R.token[i]) span.textContent = visible(R.token[i]); else span.classList.add("empty");
    }
    else if (!text.trim() && text.includes("\n")) { span.classList.add("nl"); span.textContent = text; }
    else span.textContent = text;
    if (rank[i] >= 0) span.classList.add("b" + bucketOf(state.run, i));
    else span.classList.add("dim");
    if (i === state.selected) span.classList.add("sel");
    span.title = "mse_nrm " + fmt(S[state.run].mse_nrm[i]);
    return span;
  }

  function renderDocument(doc) {
    const box = el("div", "doc"), text = D.docs.text[doc];
    const shown = [];
    for (let i = docFirst[doc]; i <= docLast[doc]; i++) if (rank[i] >= 0) shown.push(i);
    box.append(el("div", "doc-head", "doc " + D.docs.id[doc] + " · " + D.sources[R.source[docFirst[doc]]]
      + " · " + shown.length + " of " + (docLast[doc] - docFirst[doc] + 1) + " tokens match"));
    const body = el("div", "doc-text");
    let cursor = 0;
    for (let i = docFirst[doc]; i <= docLast[doc]; i++) {
      if (R.start[i] > cursor) body.append(text.slice(cursor, R.start[i]));
      body.append(tokenSpan(i));
      cursor = Math.max(cursor, R.end[i]);
    }
    if (cursor < text.length) body.append(text.slice(cursor));
    box.append(body);
    return box;
  }

  function renderItem(i) {
    const box = el("div", "item"), scores = S[state.run];
    const doc = R.doc[i], text = D.docs.text[doc];
    box.append(el("div", "item-head", "mse_nrm " + fmt(scores.mse_nrm[i]) + " · doc " + D.docs.id[doc]
      + " pos " + R.position[i] + " · " + D.sources[R.source[i]] + " · " + D.types[R.type[i]]));
    const ctx = el("div", "ctx");
    const start = Math.max(0, R.start[i] - 120);
    ctx.append((start > 0 ? "…" : "") + text.slice(start, R.start[i]), tokenSpan(i));
    box.append(ctx);
    const first = (scores.explanation[i] || "").split("\n").find((line) => line.trim()) || "";
    box.append(el("div", "expl", first));
    return box;
  }

  function renderList() {
    const list = $("list");
    const frag = document.createDocumentFragment();
    if (state.sort === "doc") {
      for (const doc of matchingDocs.slice(state.page * PAGE_DOCS, (state.page + 1) * PAGE_DOCS)) {
        frag.append(renderDocument(doc));
      }
    } else {
      for (const row of order.slice(state.page * PAGE_TOKENS, (state.page + 1) * PAGE_TOKENS)) {
        frag.append(renderItem(row));
      }
    }
    if (!order.length) frag.append(el("p", "missing", "No token matches these filters."));
    list.replaceChildren(frag);
    $("page").textContent = "page " + (state.page + 1) + " of " + pageCount();
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page + 1 >= pageCount();
  }

  function renderStatus() {
    const parts = [order.length.toLocaleString("en") + " of " + N.toLocaleString("en") + " tokens",
      matchingDocs.length.toLocaleString("en") + " documents"];
    RUNS.forEach((run, r) => {
      let sum = 0, n = 0;
      for (const row of order) if (S[r].mse_nrm[row] !== null) { sum += S[r].mse_nrm[row]; n++; }
      if (!n) return;
      const fve = run.variance ? " (FVE " + signed(1 - sum / n / run.variance) + ")" : "";
      parts.push(run.name + ": mean mse_nrm " + fmt(sum / n) + fve);
    });
    $("status").textContent = parts.join(" · ");
    $("export").textContent = "Export JSON (" + order.length.toLocaleString("en") + ")";
    const legend = $("legend");
    if (state.scale === "shared") {
      const t = D.shared_thresholds;
      legend.replaceChildren(el("span", null, RUNS[state.run].name + " error, on " + RUNS[0].name + "'s quintiles:"));
      t.concat([null]).forEach((high, b) => legend.append(el("span", "swatch b" + b,
        b === 0 ? "< " + fmt(high, 2) : high === null ? "≥ " + fmt(t[b - 1], 2) : fmt(t[b - 1], 2) + "–" + fmt(high, 2))));
    } else {
      legend.replaceChildren(el("span", null, RUNS[state.run].name + " error:"));
      RUNS[state.run].buckets.forEach((edges, b) => {
        if (edges) legend.append(el("span", "swatch b" + b, BUCKET_NAMES[b] + " " + fmt(edges[0], 2) + "–" + fmt(edges[1], 2)));
      });
    }
  }

  // ------------------------------------------------------------------ the panel

  function claimsOf(r, i) {
    const code = S[r].claims[i];
    if (!code) return null;
    const out = {};
    D.claim_fields.forEach(([field], k) => { out[field] = VERDICTS[code[k]]; });
    return out;
  }

  function runCard(r, i) {
    const s = S[r], card = el("div", "card");
    card.append(el("h4", null, RUNS[r].name));
    if (s.mse_nrm[i] === null) { card.append(el("div", "missing", "no explanation for this token")); return card; }
    card.append(el("div", "scores", "mse_nrm " + fmt(s.mse_nrm[i]) + " · cos " + fmt(s.cos[i])
      + " · length " + (s.n_tokens[i] ?? "—") + " tokens" + (s.finished[i] === false ? " (unfinished)" : "")
      + " · " + BUCKET_NAMES[s.bucket[i]]));
    card.append(el("div", "explanation", s.explanation[i]));
    return card;
  }

  function truthTable(i) {
    const record = R.record[i], table = el("table", "truth"), head = el("tr");
    head.append(el("th", null, "latent"), el("th", null, "true value"));
    RUNS.forEach((run) => head.append(el("th", null, run.name)));
    table.append(head);
    const claims = RUNS.map((_, r) => claimsOf(r, i));
    for (const [field, key] of D.claim_fields) {
      const tr = el("tr");
      tr.append(el("td", null, field), el("td", null, record[key] ?? "—"));
      claims.forEach((c) => tr.append(c ? el("td", "v-" + c[field], c[field]) : el("td", "missing", "—")));
      table.append(tr);
    }
    const others = Object.keys(record).filter((k) => !D.claim_fields.some(([, key]) => key === k));
    for (const key of others) {
      const tr = el("tr");
      tr.append(el("td", null, key), el("td", null, JSON.stringify(record[key])));
      table.append(tr);
    }
    return table;
  }

  // A record that is not the toy world's (a released dataset's labels …): its keys and
  // values as they are, with no claims judged against it.
  function recordTable(record) {
    const table = el("table", "truth record"), head = el("tr");
    head.append(el("th", null, "key"), el("th", null, "value"));
    table.append(head);
    for (const [key, value] of Object.entries(record)) {
      const tr = el("tr");
      tr.append(el("td", null, key), el("td", null, typeof value === "string" ? value : JSON.stringify(value)));
      table.append(tr);
    }
    return table;
  }

  function renderPanel(i) {
    const panel = $("panel");
    panel.replaceChildren();
    if (i < 0) { panel.append(el("p", "hint", "Click a token (or press → / j) to see its explanations.")); return; }
    const doc = R.doc[i], text = D.docs.text[doc];
    panel.append(el("h2", null, "token " + JSON.stringify(R.token[i])));
    const meta = el("dl", "meta");
    const add = (k, v) => meta.append(el("dt", null, k), el("dd", null, v));
    add("document", D.docs.id[doc]);
    add("position", R.position[i]);
    add("source", D.sources[R.source[i]]);
    add("token type", D.types[R.type[i]]);
    add("shown", rank[i] >= 0 ? (rank[i] + 1) + " of " + order.length : "filtered out");
    panel.append(meta);
    panel.append(el("h3", null, "Context"));
    const context = el("div", "context"), from = Math.max(0, R.start[i] - CONTEXT_TAIL);
    context.append((from > 0 ? "…" : "") + text.slice(from, R.start[i]), el("mark", null, visible(text.slice(R.start[i], R.end[i]) || R.token[i])));
    panel.append(context);
    panel.append(el("h3", null, RUNS.length > 1 ? "Explanations, run by run" : "Explanation"));
    const compare = el("div", "compare");
    compare.style.gridTemplateColumns = "repeat(" + Math.min(RUNS.length, 3) + ", minmax(0, 1fr))";
    RUNS.forEach((_, r) => compare.append(runCard(r, i)));
    panel.append(compare);
    if (R.teacher[i]) {
      panel.append(el("h3", null, "Teacher's explanation (mse_nrm " + fmt(R.teacher_mse[i]) + ")"));
      panel.append(el("div", "explanation", R.teacher[i]));
    }
    if (R.record[i] && R.world_record[i]) {
      panel.append(el("h3", null, "Toy-world latent record: each claim true / false / absent"));
      panel.append(truthTable(i));
    } else if (R.record[i]) {
      panel.append(el("h3", null, "Record"));
      panel.append(recordTable(R.record[i]));
    }
  }

  // ------------------------------------------------------------------ selection, keys

  function select(i, scroll) {
    const old = document.querySelector(".tok.sel");
    if (old) old.classList.remove("sel");
    state.selected = i;
    if (i >= 0) {
      const span = document.querySelector('.tok[data-row="' + i + '"]');
      if (span) { span.classList.add("sel"); if (scroll) span.scrollIntoView({block: "nearest"}); }
    }
    renderPanel(i);
  }

  function move(step) {
    if (!order.length) return;
    let k = state.selected >= 0 && rank[state.selected] >= 0 ? rank[state.selected] + step : (step > 0 ? 0 : order.length - 1);
    k = Math.min(order.length - 1, Math.max(0, k));
    const row = order[k];
    if (pageOf(row) !== state.page) { state.page = pageOf(row); renderList(); }
    select(row, true);
  }

  function goPage(step) {
    state.page = Math.min(pageCount() - 1, Math.max(0, state.page + step));
    renderList();
    window.scrollTo(0, 0);
  }

  // ------------------------------------------------------------------ export

  function exportRecord(i) {
    const explanations = [];
    RUNS.forEach((run, r) => {
      const s = S[r];
      if (s.mse_nrm[i] === null) return;
      explanations.push({run: run.name, text: s.explanation[i], mse_nrm: s.mse_nrm[i], cos: s.cos[i],
        n_tokens: s.n_tokens[i], finished: s.finished[i], error_bucket: s.bucket[i], claims: claimsOf(r, i)});
    });
    const doc = R.doc[i];
    return {doc_id: D.docs.id[doc], position: R.position[i], token: R.token[i], token_type: D.types[R.type[i]],
      source: D.sources[R.source[i]], context: D.docs.text[doc].slice(0, R.end[i]), explanations,
      teacher: R.teacher[i] === null ? null : {text: R.teacher[i], mse_nrm: R.teacher_mse[i]}, record: R.record[i]};
  }

  function exportJson() {
    const doc = {schema: "nlakit.explanations", schema_version: 1,
      runs: RUNS.map((r) => ({name: r.name, path: r.path, n: r.n, baseline_variance: r.variance, fve: r.fve})),
      records: order.map(exportRecord)};
    const blob = new Blob([JSON.stringify(doc, null, 1)], {type: "application/json"});
    const link = el("a");
    link.href = URL.createObjectURL(blob);
    link.download = "explanations.json";
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }

  // ------------------------------------------------------------------ set-up

  function fill(select, options) {
    for (const [label, value] of options) select.append(new Option(label, String(value)));
  }
  fill($("source"), [["all", -1], ...D.sources.map((s, k) => [s, k])]);
  fill($("type"), [["all", -1], ...D.types.map((s, k) => [s, k])]);
  fill($("bucket"), [["all", -1], ...BUCKET_NAMES.map((s, k) => [s, k])]);
  fill($("run"), RUNS.map((r, k) => [r.name, k]));
  fill($("scale"), [["each run's quintiles", "own"], [RUNS[0].name + "'s quintiles", "shared"]]);
  if (RUNS.length < 2) { $("run-label").hidden = true; $("scale-label").hidden = true; }
  for (const run of RUNS) {
    $("runs").append(el("span", "run-chip", run.name + " · " + run.n.toLocaleString("en") + " tokens"
      + (run.fve === null ? "" : " · FVE " + signed(run.fve))));
  }

  const onSelect = (id, key) => $(id).addEventListener("change", (e) => {
    state[key] = key === "sort" || key === "scale" ? e.target.value : Number(e.target.value);
    applyFilters();
  });
  onSelect("source", "source"); onSelect("type", "type"); onSelect("bucket", "bucket");
  onSelect("run", "run"); onSelect("scale", "scale"); onSelect("sort", "sort");
  $("search").addEventListener("input", (e) => { state.query = e.target.value.trim().toLowerCase(); applyFilters(); });
  $("export").addEventListener("click", exportJson);
  $("prev").addEventListener("click", () => goPage(-1));
  $("next").addEventListener("click", () => goPage(1));
  $("list").addEventListener("click", (e) => {
    const span = e.target.closest(".tok");
    if (span) select(Number(span.dataset.row), false);
  });
  document.addEventListener("keydown", (e) => {
    const typing = e.target.matches("input, select, textarea");
    if (e.key === "Escape") { if (typing) e.target.blur(); else select(-1, false); return; }
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "ArrowRight" || e.key === "j") { move(1); e.preventDefault(); }
    else if (e.key === "ArrowLeft" || e.key === "k") { move(-1); e.preventDefault(); }
    else if (e.key === "/") { $("search").focus(); e.preventDefault(); }
  });

  document.title = D.title;
  applyFilters();
  window.nlakitViewer = {state, applyFilters, order: () => order, loadMs: performance.now() - t0, unpackMs: t1 - t0};
  document.body.dataset.ready = "1";
})();
