// The review page's keyboard and in-page verdicts (served as a file: the CSP allows no inline script).
// Without it every button is a plain form POST that comes back to the same page position.
// Keys: c confirm, r reject, o other person (focus its field), j/k or arrows next/previous card,
// n next unreviewed. A verdict is posted with fetch (the form's own fields, CSRF token included)
// and the next unreviewed card gets focus; when none is left on the page, the next page loads
// (or, on the last page, the count says the queue is done).
(function () {
  "use strict";
  var queue = document.querySelector("[data-review-queue]");
  if (!queue) {
    return;
  }
  var cards = Array.prototype.slice.call(queue.querySelectorAll("[data-review-card]"));
  var current = -1;

  function focusCard(index) {
    if (index < 0 || index >= cards.length) {
      return false;
    }
    current = index;
    cards[index].focus();
    cards[index].scrollIntoView({ block: "nearest" });
    return true;
  }

  function pending(card) {
    return card.getAttribute("data-state") === "unreviewed" && !card.hasAttribute("data-busy");
  }

  function nextUnreviewed(from) {
    for (var i = from + 1; i < cards.length; i++) {
      if (pending(cards[i])) {
        return focusCard(i);
      }
    }
    for (var j = 0; j <= from && j < cards.length; j++) {
      if (pending(cards[j])) {
        return focusCard(j);
      }
    }
    var more = queue.getAttribute("data-next");
    if (more && queue.hasAttribute("data-unreviewed-only")) {
      window.location.reload(); // nothing left here: the unreviewed queue now starts with the next ones
    } else if (more) {
      window.location.assign(more);
    } else {
      var count = document.getElementById("review-count");
      count.textContent = "nothing to review: every card here is decided (reload for new searches)";
      count.focus();
    }
    return false;
  }

  function cardOf(element) {
    return element && element.closest ? element.closest("[data-review-card]") : null;
  }

  function submit(form, verdict) {
    var card = cardOf(form);
    var status = form.querySelector(".review-status");
    var body = new FormData(form);
    body.set("verdict", verdict);
    card.setAttribute("data-busy", "");
    status.textContent = "saving…";
    fetch(form.action, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then(function (response) {
        return response.json().then(function (answer) {
          return { ok: response.ok, answer: answer };
        });
      })
      .then(function (result) {
        card.removeAttribute("data-busy");
        if (!result.ok) {
          status.textContent = "not saved: " + (result.answer.error || "the server refused it");
          card.focus();
          return;
        }
        var done = result.answer;
        var said = done.verdict + " by " + done.actor;
        if (done.actual_person) {
          said += ": really " + done.actual_person;
        }
        if (done.enrolled) {
          said += " (enrollment: " + done.enrolled + ")";
        }
        if (done.superseded_by) {
          said += ". Reviewed before by " + done.superseded_by + " (" + done.superseded + ", " + done.superseded_at + ")";
        }
        status.textContent = said;
        card.setAttribute("data-state", done.verdict);
        card.classList.add("review-done");
        var state = card.querySelector(".review-state");
        if (state) {
          state.textContent = done.verdict + " by " + done.actor + " (" + done.at + ")";
        }
        nextUnreviewed(cards.indexOf(card));
      })
      .catch(function () {
        card.removeAttribute("data-busy");
        status.textContent = "not saved: the server could not be reached; try again";
      });
  }

  queue.addEventListener("submit", function (event) {
    var form = event.target;
    var button = event.submitter;
    if (!form.hasAttribute("data-review-form") || !button || !button.value) {
      return;
    }
    event.preventDefault();
    submit(form, button.value);
  });

  queue.addEventListener("focusin", function (event) {
    var card = cardOf(event.target);
    if (card) {
      current = cards.indexOf(card);
    }
  });

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey) {
      return;
    }
    var target = event.target;
    var typing = target && /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName) && target.type !== "checkbox";
    if (typing) {
      if (event.key === "Escape" && cardOf(target)) {
        cardOf(target).focus();
      } else if (event.key === "Enter" && target.hasAttribute("data-other-field")) {
        event.preventDefault(); // Enter in the other person's field means "other person", not "confirm"
        submit(target.form, "other");
      }
      return;
    }
    var card = current >= 0 ? cards[current] : null;
    var form = card ? card.querySelector("[data-review-form]") : null;
    switch (event.key) {
      case "j":
      case "ArrowDown":
        focusCard(current + 1);
        break;
      case "k":
      case "ArrowUp":
        focusCard(Math.max(0, current - 1));
        break;
      case "n":
        nextUnreviewed(current);
        break;
      case "c":
        if (form && !card.hasAttribute("data-busy")) {
          submit(form, "confirmed");
        }
        break;
      case "r":
        if (form && !card.hasAttribute("data-busy")) {
          submit(form, "rejected");
        }
        break;
      case "o":
        if (form) {
          form.querySelector("[data-other-field]").focus();
        }
        break;
      default:
        return;
    }
    event.preventDefault();
  });

  var start = window.location.hash ? document.getElementById(window.location.hash.slice(1)) : null;
  var first = start ? cards.indexOf(start) : -1;
  if (first >= 0) {
    focusCard(first);
  } else {
    for (var i = 0; i < cards.length; i++) {
      if (pending(cards[i])) {
        focusCard(i);
        break;
      }
    }
  }
})();
