// Keyboard-only labelling: the next card is preloaded (hidden), so a submit flips the page at once while htmx
// posts the label in the background; the answer refills the preload slot. Requests run one after another
// (hx-sync="this:queue all" on #labelling), so an undo never overtakes the submit before it.
(function () {
  "use strict";

  const root = document.getElementById("labelling");
  if (!root) return;

  const SUGGESTION_KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9"];
  const MAX_RESULTS = 8;
  let categories = [];  // [id, full path, lower-case path, lower-case leaf name]
  let shownAt = performance.now();

  fetch(root.dataset.categoriesUrl, { credentials: "same-origin" })
    .then((response) => response.json())
    .then((data) => {
      categories = data.categories.map(([id, path]) => {
        const lower = path.toLowerCase();
        const cut = lower.lastIndexOf(" > ");
        return [id, path, lower, cut < 0 ? lower : lower.slice(cut + 3)];
      });
    });

  const current = () => document.getElementById("current");
  const preload = () => document.getElementById("preload");
  const card = () => current().querySelector(".label-card");
  const form = () => card() && card().querySelector("form.label-form");

  function say(text) {
    const box = document.getElementById("labelling-message");
    box.replaceChildren();
    if (text) {
      const p = document.createElement("p");
      p.className = "warning";
      p.textContent = text;
      box.append(p);
    }
  }

  function show(element) {
    current().replaceChildren(element);
    shownAt = performance.now();
  }

  function placeholder() {
    const div = document.createElement("div");
    div.className = "queue-loading card";
    div.textContent = "Loading the next product…";
    return div;
  }

  // After the preload slot was refilled: drop a copy of the card on screen, and fill an empty screen.
  function settle() {
    const onScreen = card();
    if (onScreen) {
      preload().querySelectorAll(`.label-card[data-item="${onScreen.dataset.item}"]`).forEach((e) => e.remove());
    } else if (preload().firstElementChild) {
      show(preload().firstElementChild);
    }
  }

  document.body.addEventListener("htmx:afterSwap", (event) => {
    if (event.detail.target.id === "preload") settle();
    if (event.detail.target.id === "labelling-cards") shownAt = performance.now();
  });

  function send(url, values) {
    const next = preload().firstElementChild;
    const showing = next && next.classList.contains("label-card") ? next.dataset.item : "";
    show(next || placeholder());
    htmx.ajax("POST", url, { source: root, target: "#preload", swap: "innerHTML",
                             values: { ...values, showing } });
  }

  function submit() {
    const f = form();
    if (!f) return;
    const picked = f.querySelector("input[name=category]:checked");
    if (!picked || !picked.value) {
      say("Pick a category first: 1–9 for a suggestion, / to search, n if none fits.");
      return;
    }
    f.elements.time_spent_ms.value = String(Math.round(performance.now() - shownAt));
    const values = Object.fromEntries(new FormData(f).entries());
    say("");
    send(f.getAttribute("action"), values);
  }

  function skip() {
    const f = form();
    if (!f) return;
    say("");
    send(f.dataset.skipUrl, { csrfmiddlewaretoken: f.elements.csrfmiddlewaretoken.value });
  }

  function undo() {
    say("");
    htmx.ajax("POST", root.dataset.undoUrl, { source: root, target: "#labelling-cards", swap: "innerHTML" });
  }

  function pick(key) {
    const f = form();
    const radio = f && f.querySelector(`input[name=category][data-key="${key}"]`);
    if (radio) {
      radio.checked = true;
      say("");
    }
  }

  function toggleFlag() {
    const f = form();
    if (!f) return;
    const box = f.elements.flagged;
    box.checked = !box.checked;
    f.elements.note.hidden = !box.checked;
    if (box.checked) f.elements.note.focus();
  }

  function toggleHelp(force) {
    const help = document.getElementById("labelling-help");
    help.hidden = force === undefined ? !help.hidden : !force;
  }

  // --- type-ahead over every exclusive category, filtered here: no request per keystroke ----------------------

  function matches(query) {
    const words = query.toLowerCase().split(/\s+/).filter(Boolean);
    if (!words.length) return [];
    const found = [];
    for (const entry of categories) {
      if (words.every((word) => entry[2].includes(word))) {
        const rank = entry[3].startsWith(words[0]) ? 0 : entry[3].includes(words[0]) ? 1 : 2;
        found.push([rank, entry[1].length, entry]);
      }
    }
    found.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    return found.slice(0, MAX_RESULTS).map((row) => row[2]);
  }

  function results(input) {
    return input.parentElement.querySelector(".typeahead-results");
  }

  function render(input) {
    const list = results(input);
    const found = matches(input.value);
    list.replaceChildren(...found.map(([id, path], index) => {
      const li = document.createElement("li");
      li.setAttribute("role", "option");
      li.dataset.id = id;
      li.dataset.path = path;
      li.textContent = path;
      if (index === 0) li.setAttribute("aria-selected", "true");
      li.addEventListener("mousedown", (event) => {
        event.preventDefault();
        choose(input, li);
      });
      return li;
    }));
    list.hidden = !found.length;
  }

  function move(input, step) {
    const options = [...results(input).children];
    if (!options.length) return;
    const at = options.findIndex((li) => li.getAttribute("aria-selected") === "true");
    const next = options[(at + step + options.length) % options.length];
    options.forEach((li) => li.removeAttribute("aria-selected"));
    next.setAttribute("aria-selected", "true");
    next.scrollIntoView({ block: "nearest" });
  }

  function choose(input, li) {
    const f = input.closest("form");
    const row = f.querySelector("li.searched");
    const radio = row.querySelector("input");
    radio.value = li.dataset.id;
    row.querySelector(".path").textContent = li.dataset.path;
    row.hidden = false;
    radio.checked = true;
    leave(input);
    say("");
  }

  function leave(input) {
    input.value = "";
    results(input).hidden = true;
    input.blur();
  }

  document.addEventListener("input", (event) => {
    if (event.target.classList.contains("typeahead-input")) render(event.target);
  });

  function onTypeahead(event) {
    const input = event.target;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      move(input, event.key === "ArrowDown" ? 1 : -1);
    } else if (event.key === "Enter") {
      event.preventDefault();
      const chosen = results(input).querySelector("[aria-selected=true]");
      if (chosen) choose(input, chosen);
    } else if (event.key === "Escape") {
      leave(input);
    }
  }

  // --- keys ---------------------------------------------------------------------------------------------------

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    const target = event.target;
    if (target.classList && target.classList.contains("typeahead-input")) return onTypeahead(event);
    if (target.classList && target.classList.contains("flag-note")) {
      if (event.key === "Enter") {
        event.preventDefault();
        submit();
      } else if (event.key === "Escape") {
        target.blur();
      }
      return;
    }
    const typing = (target.tagName === "INPUT" && !["radio", "checkbox"].includes(target.type))
      || target.tagName === "TEXTAREA" || target.tagName === "SELECT";
    if (typing) return;
    if (SUGGESTION_KEYS.includes(event.key)) return pick(event.key);
    const actions = {
      "/": () => {
        const input = card() && card().querySelector(".typeahead-input");
        if (input) input.focus();
      },
      n: () => pick("n"),
      Enter: submit,
      s: skip,
      u: undo,
      f: toggleFlag,
      "?": () => toggleHelp(),
      Escape: () => toggleHelp(false),
    };
    const action = actions[event.key];
    if (action) {
      event.preventDefault();
      action();
    }
  });

  // Buttons and a native form submit (Enter on a focused radio) take the same paths as the keys.
  document.addEventListener("submit", (event) => {
    const f = event.target;
    if (f.classList.contains("label-form")) {
      event.preventDefault();
      (event.submitter && event.submitter.value === "skip" ? skip : submit)();
    } else if (f.classList.contains("undo-form")) {
      event.preventDefault();
      undo();
    }
  });
  root.querySelector("[data-action=help]").addEventListener("click", () => toggleHelp());
  document.addEventListener("change", (event) => {
    if (event.target.name === "flagged") event.target.form.elements.note.hidden = !event.target.checked;
  });
})();
