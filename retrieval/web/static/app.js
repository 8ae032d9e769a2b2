// Score-to-audio retrieval: the page over the HTTP API (no framework, no CDN).
"use strict";

const $ = (id) => document.getElementById(id);
let lastQuery = null;

function showTab(name) {
  for (const tab of ["search", "collection"]) {
    $(tab).hidden = tab !== name;
    $("tab-" + tab).classList.toggle("active", tab === name);
  }
  if (name === "collection") loadCollection();
}
window.addEventListener("hashchange", () => showTab(location.hash === "#collection" ? "collection" : "search"));

function themeRequest() {
  // multipart with the file, or JSON with pasted text; the options either way
  const options = {
    part: $("part").value.trim(), measures: $("measures").value.trim(), top: $("top").value,
    candidates: $("candidates").value,
    rendering: $("rendering").value, transpose: $("transpose").checked, exhaustive: $("exhaustive").checked,
  };
  const file = $("theme-file").files[0];
  const text = $("theme-text").value.trim();
  if (file) {
    const form = new FormData();
    form.append("theme", file);
    for (const [k, v] of Object.entries(options)) form.append(k, String(v));
    return { body: form };
  }
  if (text) {
    return { body: JSON.stringify({ ...options, text, format: $("text-format").value }),
             headers: { "Content-Type": "application/json" } };
  }
  return null;
}

async function post(url, request) {
  const response = await fetch(url, { method: "POST", ...request });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}

async function showNotation() {
  const request = themeRequest();
  if (!request) return;
  $("message").textContent = "";
  try {
    $("notation").innerHTML = (await post("/api/notation", request)).svg;
  } catch (error) {
    $("notation").innerHTML = "";
    $("message").textContent = error.message;
  }
}

function fmt(seconds) {
  const m = Math.floor(seconds / 60), s = (seconds - 60 * m).toFixed(1).padStart(4, "0");
  return `${m}:${s}`;
}

function playSpan(audio, start, end) {
  // start at the matched span and stop at its end (the #t fragment does both where supported)
  audio.addEventListener("loadedmetadata", () => { if (audio.currentTime < start) audio.currentTime = start; });
  audio.addEventListener("timeupdate", () => { if (audio.currentTime >= end) audio.pause(); });
}

function showPlot(match) {
  $("plot").src = `/api/recordings/${match.recording_id}/plot?query_id=${encodeURIComponent(lastQuery)}`;
  $("plot-caption").textContent = `theme vs. ${match.path.split("/").pop()}, ${fmt(match.start)}–${fmt(match.end)}`;
  $("plot-figure").hidden = false;
}

function showResults(answer) {
  lastQuery = answer.query_id;
  const rows = $("result-rows");
  rows.innerHTML = "";
  const verdict = $("verdict");
  verdict.textContent = answer.confident_match ? "Confident match." :
    "No confident match: the best recording does not stand out from the others. Best candidates:";
  verdict.className = answer.confident_match ? "" : "none";
  for (const m of answer.matches) {
    const tr = document.createElement("tr");
    tr.className = m.confident ? "confident" : "";
    const name = m.path.split("/").pop();
    const transposed = m.transposition ? ` (transposed ${m.transposition > 0 ? "+" : ""}${m.transposition})` : "";
    tr.innerHTML = `<td class="num">${m.rank}</td><td class="num">${m.score.toFixed(3)}</td>` +
      `<td class="recording"></td><td class="span">${fmt(m.start)}–${fmt(m.end)}</td><td></td><td></td>`;
    tr.querySelector(".recording").textContent = name + transposed;
    const audio = document.createElement("audio");
    audio.controls = true;
    audio.preload = "none";
    audio.src = `/api/recordings/${m.recording_id}/audio#t=${m.start.toFixed(2)},${m.end.toFixed(2)}`;
    playSpan(audio, m.start, m.end);
    tr.children[4].appendChild(audio);
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "chroma";
    button.addEventListener("click", () => showPlot(m));
    tr.children[5].appendChild(button);
    rows.appendChild(tr);
  }
  const t = answer.timings;
  $("timing").textContent = `${(t.total * 1000).toFixed(0)} ms (reading the theme ${(t.parse * 1000).toFixed(0)}, ` +
    `ANN ${(t.ann * 1000).toFixed(0)}, re-rank ${(t.rerank * 1000).toFixed(0)})`;
  $("results").hidden = false;
  if (answer.matches.length) showPlot(answer.matches[0]);
}

$("query-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const request = themeRequest();
  if (!request) { $("message").textContent = "Choose a score file or paste a theme first."; return; }
  $("message").textContent = "";
  $("busy").hidden = false;
  $("search-button").disabled = true;
  showNotation();  // engraved in parallel with the search
  try {
    showResults(await post("/api/query", themeRequest()));
  } catch (error) {
    $("results").hidden = true;
    $("message").textContent = error.message;
  } finally {
    $("busy").hidden = true;
    $("search-button").disabled = false;
  }
});
$("theme-file").addEventListener("change", showNotation);

async function loadCollection() {
  const [status, recordings] = await Promise.all([fetch("/api/status"), fetch("/api/recordings")]
    .map((p) => p.then((r) => r.json())));
  const s = status;
  const settings = Object.entries(s.settings).map(([k, v]) => `${k}=${v}`).join(", ");
  $("collection-summary").innerHTML =
    `<p><b>${s.recordings}</b> recordings, <b>${s.hours.toFixed(2)}</b> h of audio; ${s.shingles} shingles in ` +
    `FAISS ${s.index_factory}, ${(s.faiss_bytes / 2 ** 20).toFixed(1)} MiB + ${(s.db_bytes / 2 ** 20).toFixed(1)} MiB ` +
    `SQLite; ${s.failed.length} failed.</p><p class="settings"></p>`;
  $("collection-summary").querySelector(".settings").textContent = "settings: " + settings;
  const rows = $("recording-rows");
  rows.innerHTML = "";
  for (const r of recordings) {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td class="num">${r.id}</td><td>${r.status}</td>` +
      `<td class="num">${r.duration ? (r.duration / 60).toFixed(1) : "?"}</td><td></td><td></td>`;
    tr.children[3].textContent = r.path;
    tr.children[4].textContent = r.error || "";
    rows.appendChild(tr);
  }
}

showTab(location.hash === "#collection" ? "collection" : "search");
