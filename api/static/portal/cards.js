/* simflow portal: saved cards. Stripe Elements card form, confirmed with stripe.confirmCardSetup on a
   SetupIntent our API creates; the confirmed SetupIntent is then recorded by our API (which checks it with
   Stripe). "Définir par défaut" and "Supprimer" call the same API. No inline script, CSP-friendly. */
(function () {
  "use strict";

  var root = document.getElementById("cards");
  var form = document.getElementById("card-form");
  if (!root || !form || typeof Stripe !== "function") return;
  var apiBase = root.dataset.apiBase;
  var message = document.getElementById("card-message");
  var submit = document.getElementById("card-submit");
  var csrf = (JSON.parse(document.body.getAttribute("hx-headers") || "{}"))["X-CSRF-Token"] || "";
  var options = root.dataset.stripeAccount ? { stripeAccount: root.dataset.stripeAccount } : undefined;
  var stripe = Stripe(root.dataset.publishableKey, options);
  var card = stripe.elements().create("card", { hidePostalCode: true });
  card.mount("#card-element");

  function say(text, isError) {
    message.textContent = text;
    message.className = isError ? "error-text" : "muted";
  }

  async function api(method, path, body) {
    var response = await fetch(apiBase + path, {
      method: method,
      credentials: "same-origin",
      headers: Object.assign({ "X-CSRF-Token": csrf, "Accept": "application/json" },
        body ? { "Content-Type": "application/json" } : {}),
      body: body ? JSON.stringify(body) : undefined,
    });
    var data = response.status === 204 ? {} : await response.json().catch(function () { return {}; });
    if (!response.ok) {
      var detail = (data.errors && data.errors.length) ? data.errors.map(function (e) { return e.reason; }).join(" ; ") : data.detail;
      throw new Error(detail || ("erreur " + response.status));
    }
    return data;
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    submit.disabled = true;
    say("Enregistrement de la carte…", false);
    try {
      var intent = await api("POST", "/setup-intent");
      var result = await stripe.confirmCardSetup(intent.client_secret, { payment_method: { card: card } });
      if (result.error) throw new Error(result.error.message || "carte refusée");
      await api("POST", "", { setup_intent_id: result.setupIntent.id });
      say("Carte enregistrée.", false);
      window.location.reload();
    } catch (err) {
      say("La carte n'a pas pu être enregistrée : " + err.message, true);
      submit.disabled = false;
    }
  });

  root.addEventListener("click", async function (event) {
    var button = event.target.closest("button[data-action]");
    if (!button) return;
    var id = button.dataset.card;
    if (button.dataset.action === "remove" && !window.confirm("Supprimer la carte se terminant par " + button.dataset.label + " ?")) return;
    button.disabled = true;
    try {
      if (button.dataset.action === "default") await api("POST", "/" + id + "/default");
      else await api("DELETE", "/" + id);
      window.location.reload();
    } catch (err) {
      say("Action impossible : " + err.message, true);
      button.disabled = false;
    }
  });
})();
