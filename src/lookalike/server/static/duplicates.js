// The page's duplicates view (?view=duplicates, and ?view=duplicates&id=N for one picture's):
// GET /api/duplicates, each group side by side with sizes, the evidence and the suggested
// keeper; on a writable server, "Remove from index" for the others (DELETE /api/images/{id}:
// the file on disk is kept). Registers itself with app.js's `views`.
"use strict";

(() => {
  const el = (tag, props = {}, ...children) => {
    const node = document.createElement(tag);
    Object.assign(node, props);
    node.append(...children);
    return node;
  };
  const server = { writable: false, tokenRequired: false, known: false };

  function size(bytes) {
    return bytes >= 1024 * 1024
      ? `${(bytes / 1024 / 1024).toFixed(1)} MB`
      : `${Math.max(1, Math.round(bytes / 1024))} KB`;
  }

  async function problem(resp) {
    try {
      const body = await resp.json();
      return body.message || body.detail || resp.statusText;
    } catch {
      return resp.statusText;
    }
  }

  async function loadServer() {
    if (server.known) return;
    const resp = await fetch("/api/stats");
    if (!resp.ok) return;
    const s = (await resp.json()).server || {};
    server.writable = Boolean(s.writable);
    server.tokenRequired = Boolean(s.token_required_for_writes);
    server.known = true;
  }

  async function remove(member, li, tokenInput) {
    const msg = li.querySelector(".member-msg");
    const button = li.querySelector(".remove");
    const headers = {};
    const token = tokenInput.value.trim();
    if (token) headers.Authorization = `Bearer ${token}`;
    button.disabled = true;
    msg.textContent = "Removing…";
    const resp = await fetch(`/api/images/${member.id}`, { method: "DELETE", headers });
    if (resp.ok) {
      li.classList.add("removed");
      button.hidden = true;
      msg.textContent = "Removed from the index (the file stays on disk).";
      return;
    }
    button.disabled = false;
    msg.textContent = resp.status === 401
      ? "A valid token is needed to remove images: enter it above."
      : `Not removed: ${await problem(resp)}`;
  }

  function renderMember(group, member, tokenInput) {
    const keeper = member.id === group.keep_id;
    const li = el("li", { className: keeper ? "member keeper" : "member" });
    li.dataset.id = String(member.id);
    const img = el("img", { src: `/api/images/${member.id}/thumbnail`, alt: member.path });
    img.loading = "lazy";
    const open = el("a", { href: `/api/images/${member.id}/file`, target: "_blank" }, img);
    open.rel = "noopener";
    const badge = el("div", { className: "badge", textContent: "Suggested keeper" });
    badge.hidden = !keeper;
    const facts = el(
      "div", { className: "facts" },
      el("span", { className: "dims", textContent: `${member.width}×${member.height}` }),
      " · ",
      el("span", { className: "bytes", textContent: size(member.bytes) }),
      " · ",
      el("span", { className: "score", textContent: `score ${member.score.toFixed(3)}` }),
    );
    const remove_ = el("button", { type: "button", className: "remove",
      textContent: "Remove from index" });
    remove_.hidden = keeper || !server.writable;
    remove_.addEventListener("click", () => remove(member, li, tokenInput));
    li.append(
      open, badge, facts,
      el("div", { className: "evidence muted", textContent: member.evidence }),
      el("div", { className: "path", textContent: member.path }),
      remove_,
      el("p", { className: "member-msg" }),
    );
    li.querySelector(".member-msg").setAttribute("aria-live", "polite");
    return li;
  }

  function renderGroup(group, tokenInput) {
    const section = el("section", { className: "dupe-group" });
    section.dataset.kind = group.kind;
    section.append(
      el("h3", { className: "group-title" },
        el("span", { className: "kind", textContent: group.kind }), " ",
        el("span", { className: "count", textContent: `${group.members.length} images` })),
      el("p", { className: "reason muted",
        textContent: `Keep ${group.keep}: ${group.keep_reason}` }),
      el("ol", { className: "members" },
        ...group.members.map((m) => renderMember(group, m, tokenInput))),
    );
    return section;
  }

  async function draw(params, section) {
    await loadServer();
    const onlyId = params.get("id") ? Number(params.get("id")) : null;
    const similar = el("input", { type: "checkbox", id: "dupes-similar" });
    similar.checked = params.get("similar") === "true";
    const tokenInput = el("input", { type: "password", id: "dupes-token", autocomplete: "off" });
    const tokenField = el("span", { id: "dupes-token-field" },
      el("label", { htmlFor: "dupes-token", textContent: "Token " }), tokenInput,
      el("span", { className: "muted", textContent: " needed to remove images from the index" }));
    tokenField.hidden = !(server.writable && server.tokenRequired);
    const find = el("button", { type: "submit", id: "dupes-find", textContent: "Find duplicates" });
    const form = el("form", { id: "dupes-form", className: "controls", autocomplete: "off" },
      el("label", {}, similar, " Also similar shots (bursts, other angles)"), " ",
      tokenField, " ", find);
    const status = el("p", { id: "dupes-status" });
    status.setAttribute("role", "status");
    status.setAttribute("aria-live", "polite");
    const box = el("div", { id: "groups" });
    section.replaceChildren(
      el("h2", { textContent: onlyId === null ? "Duplicates" : "Duplicates of one picture" }),
      form,
      el("p", { className: "muted", textContent: "Exact: identical files. Near: the same photo "
        + "after edits (resized, recompressed, recoloured, captioned, bordered, cropped, "
        + "mirrored, slightly rotated), verified. Similar: other shots of one scene. The "
        + "suggested keeper comes first: the largest resolution, then the best quality, then "
        + "the oldest file. Removing takes an image out of the index only; files on disk are "
        + "never deleted." }),
      status, box,
    );

    async function run(event) {
      if (event) event.preventDefault();
      const query = new URLSearchParams();
      if (similar.checked) query.set("similar", "true");
      status.textContent = "Looking for duplicates…";
      find.disabled = true;
      try {
        const resp = await fetch(`/api/duplicates?${query}`);
        if (!resp.ok) {
          status.textContent = `Error: ${await problem(resp)}`;
          return;
        }
        let groups = (await resp.json()).groups;
        if (onlyId !== null) groups = groups.filter((g) => g.ids.includes(onlyId));
        box.replaceChildren(...groups.map((g) => renderGroup(g, tokenInput)));
        const counts = {};
        for (const g of groups) counts[g.kind] = (counts[g.kind] || 0) + 1;
        const parts = Object.entries(counts).map(([k, n]) => `${n} ${k}`);
        status.textContent = groups.length
          ? `${groups.length} groups: ${parts.join(", ")}`
          : onlyId === null ? "No duplicates found." : "No duplicates of this picture found.";
      } catch (err) {
        status.textContent = `Error: ${err}`;
      } finally {
        find.disabled = false;
      }
    }

    form.addEventListener("submit", run);
    await run();
  }

  if (typeof views === "object" && views !== null) {
    views.duplicates = (params, section) => {
      draw(params, section);
    };
  }
})();
