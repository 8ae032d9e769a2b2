// Score-to-audio retrieval: the page over the HTTP API (no framework, no CDN).
"use strict";

const $ = (id) => document.getElementById(id);
let lastQuery = null;
let timemap = null;  // the engraved theme's note ids by quarter position (POST /api/notation)
let following = null;  // the match whose player moves the lit note: {match, audio}
let firstMatch = null;  // the first match's {match, audio}: a clicked note seeks it when none is followed
const AUDIO = /\.(wav|wave|flac|mp3|ogg|oga|opus|aiff?|aifc|au|snd|caf|w64|rf64)$/i;

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
    occurrences: $("occurrences").checked, exclude_self: $("exclude-self").checked,
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
  timemap = null;
  $("notation").innerHTML = "";
  const file = $("theme-file").files[0];
  if (!request || (file && AUDIO.test(file.name))) return;  // an excerpt has no score to show
  $("message").textContent = "";
  try {
    const engraved = await post("/api/notation", request);
    $("notation").innerHTML = engraved.svg;
    timemap = engraved.timemap;
  } catch (error) {
    $("message").textContent = error.message;
  }
}

function noteIdsAt(quarter) {
  // the engraved notes beginning at a quarter position of the theme
  const entry = (timemap || []).find((e) => Math.abs(e.quarter - quarter) < 1e-3);
  return entry ? entry.notes : [];
}

function lightNote(match, time) {
  // light the theme note sounding at `time` in the match's recording (none outside the match)
  for (const lit of document.querySelectorAll("#notation .playing")) lit.classList.remove("playing");
  if (!match.notes.length || time < match.notes[0].time - 0.05 || time > match.end + 0.3) return;
  let current = match.notes[0];
  for (const n of match.notes) if (n.time <= time + 0.02) current = n;
  for (const id of noteIdsAt(current.quarter)) {
    const element = document.getElementById(id);
    if (element) element.classList.add("playing");
  }
}

function follow(audio, match) {
  // while this player plays, the lit note follows it (per animation frame, not only on timeupdate)
  const step = () => {
    if (following && following.audio === audio) lightNote(match, audio.currentTime);
    if (!audio.paused) requestAnimationFrame(step);
  };
  audio.addEventListener("play", () => { following = { match, audio }; requestAnimationFrame(step); });
  audio.addEventListener("seeked", () => { if (following && following.audio === audio) lightNote(match, audio.currentTime); });
}

$("notation").addEventListener("click", (event) => {
  // a clicked note seeks the followed player (else the first match's) to where that note sounds
  const note = event.target.closest("g.note");
  if (!note || !timemap) return;
  const entry = timemap.find((e) => e.notes.includes(note.id));
  const target = following || firstMatch;
  if (!entry || !target) return;
  const timed = target.match.notes.find((n) => Math.abs(n.quarter - entry.quarter) < 1e-3);
  if (!timed) return;
  following = target;
  target.audio.currentTime = timed.time;
  target.audio.play();
});

function fmt(seconds) {
  const m = Math.floor(seconds / 60), s = (seconds - 60 * m).toFixed(1).padStart(4, "0");
  return `${m}:${s}`;
}

function playFrom(audio, start) {
  // the player is free (play on past the match, seek anywhere); it opens at the match's start
  audio.addEventListener("loadedmetadata", () => { if (audio.currentTime < start) audio.currentTime = start; },
                         { once: true });
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
  const players = new Map();
  following = null;
  const verdict = $("verdict");
  verdict.textContent = answer.confident_match ? "Confident match." :
    "No confident match: the best recording does not stand out from the others. Best candidates:";
  verdict.className = answer.confident_match ? "" : "none";
  for (const m of answer.matches) {
    const tr = document.createElement("tr");
    tr.className = m.confident ? "confident" : "";
    const name = m.path.split("/").pop();
    const moved = ((m.transposition + 5) % 12 + 12) % 12 - 5;  // the nearer way: 9 up is 3 down
    const transposed = moved ? ` (theme ${moved > 0 ? "+" : "−"}${Math.abs(moved)} semitone${Math.abs(moved) > 1 ? "s" : ""})` : "";
    tr.innerHTML = `<td class="num">${m.rank}</td><td class="num">${m.score.toFixed(3)}</td>` +
      `<td class="recording"></td><td class="span">${fmt(m.start)}–${fmt(m.end)}</td><td></td><td></td>`;
    tr.querySelector(".recording").textContent = name + transposed;
    const audio = document.createElement("audio");
    audio.controls = true;
    audio.preload = "metadata";
    audio.src = `/api/recordings/${m.recording_id}/audio`;
    playFrom(audio, m.start);
    follow(audio, m);
    players.set(m.recording_id, { match: m, audio });
    const play = document.createElement("button");
    play.type = "button";
    play.className = "play-match";
    play.textContent = "▶ match";
    play.title = `play from ${fmt(m.start)}; the player goes on past the match`;
    play.addEventListener("click", () => { audio.currentTime = m.start; audio.play(); });
    tr.children[4].append(play, audio);
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "chroma";
    button.addEventListener("click", () => showPlot(m));
    tr.children[5].appendChild(button);
    rows.appendChild(tr);
  }
  firstMatch = players.size ? players.get(answer.matches[0].recording_id) : null;
  showOccurrences(answer.occurrences, players);
  const t = answer.timings;
  $("timing").textContent = `${(t.total * 1000).toFixed(0)} ms (reading the theme ${(t.parse * 1000).toFixed(0)}, ` +
    `ANN ${(t.ann * 1000).toFixed(0)}, re-rank ${(t.rerank * 1000).toFixed(0)})`;
  $("results").hidden = false;
  if (answer.matches.length) showPlot(answer.matches[0]);
}

function showOccurrences(occurrences, players) {
  // every place the theme sounds (query option "every occurrence"), each played in its recording's player
  $("occurrence-list").hidden = !occurrences;
  const rows = $("occurrence-rows");
  rows.innerHTML = "";
  for (const o of occurrences || []) {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td class="num">${o.score.toFixed(3)}</td><td class="recording"></td>` +
      `<td class="span">${fmt(o.start)}–${fmt(o.end)}</td><td></td>`;
    tr.querySelector(".recording").textContent = o.path.split("/").pop();
    const play = document.createElement("button");
    play.type = "button";
    play.className = "play-occurrence";
    play.textContent = "▶";
    play.title = `play ${fmt(o.start)}–${fmt(o.end)} in the recording's player above`;
    play.addEventListener("click", () => {
      const player = players.get(o.recording_id);
      player.audio.currentTime = o.start;
      player.audio.play();
    });
    tr.children[3].appendChild(play);
    rows.appendChild(tr);
  }
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

async function showIntro() {
  // what is searched, and an example theme where the server offers one (the demo collection)
  try {
    const s = await (await fetch("/api/status")).json();
    // a mean of networks is named "a+b": spaced, so the line can wrap between them on a phone
    const model = s.settings ? s.settings.model_id.split("+").join(" + ") : "";
    $("collection-line").textContent =
      `${s.recordings} recordings, ` + (s.hours < 1 ? `${Math.round(s.hours * 60)} minutes` : `${s.hours.toFixed(1)} hours`) +
      " of audio" + (model ? ` (model ${model})` : "") + ".";
  } catch (error) {
    $("collection-line").textContent = "The collection cannot be read now.";
  }
  const example = await fetch("/api/example");
  if (!example.ok) return;
  const file = new File([await example.blob()], "example.musicxml", { type: "application/xml" });
  $("example-button").hidden = false;
  $("example-button").addEventListener("click", () => {
    const files = new DataTransfer();
    files.items.add(file);
    $("theme-file").files = files.files;
    $("search-button").click();
  });
}

async function loadCollection() {
  const [status, recordings] = await Promise.all([fetch("/api/status"), fetch("/api/recordings")]
    .map((p) => p.then((r) => r.json())));
  const s = status;
  const settings = Object.entries(s.settings).map(([k, v]) => `${k}=${v}`).join(", ");
  const size = (s.faiss_bytes + s.frames_bytes + s.db_bytes) / 2 ** 20;
  $("collection-summary").innerHTML =
    `<p><b>${s.recordings}</b> recordings, <b>${s.hours.toFixed(2)}</b> h of audio, ${size.toFixed(1)} MiB on disk; ` +
    `${s.failed.length} could not be read.</p><p class="settings"></p>`;
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
showIntro();
