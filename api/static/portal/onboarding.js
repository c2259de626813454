/* simflow portal: the integrator pays its onboarding deposit or balance by card. Stripe Elements card form,
   confirmed with stripe.confirmCardSetup on a SetupIntent the portal creates; the PaymentMethod it yields is
   then charged by the onboarding workflow through the API (POST …/card-payments). No inline script. */
(function () {
  "use strict";

  var root = document.getElementById("payments");
  var form = document.getElementById("pay-form");
  if (!root || !form || typeof Stripe !== "function") return;
  var apiBase = root.dataset.apiBase;
  var setupUrl = root.dataset.setupUrl;
  var message = document.getElementById("pay-message");
  var submit = document.getElementById("pay-submit");
  var csrf = (JSON.parse(document.body.getAttribute("hx-headers") || "{}"))["X-CSRF-Token"] || "";
  var stripe = Stripe(root.dataset.publishableKey);
  var card = stripe.elements().create("card", { hidePostalCode: true });
  card.mount("#card-element");

  function say(text, isError) {
    message.textContent = text;
    message.className = isError ? "error-text" : "muted";
  }

  async function post(url, body) {
    var response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: Object.assign({ "X-CSRF-Token": csrf, "Accept": "application/json" },
        body ? { "Content-Type": "application/json" } : {}),
      body: body ? JSON.stringify(body) : undefined,
    });
    var data = await response.json().catch(function () { return {}; });
    if (!response.ok) {
      var detail = (data.errors && data.errors.length) ? data.errors.map(function (e) { return e.reason; }).join(" ; ") : data.detail;
      throw new Error(detail || ("erreur " + response.status));
    }
    return data;
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    submit.disabled = true;
    say("Paiement en cours…", false);
    try {
      var intent = await post(setupUrl);
      var result = await stripe.confirmCardSetup(intent.client_secret, { payment_method: { card: card } });
      if (result.error) throw new Error(result.error.message || "carte refusée");
      await post(apiBase + "/card-payments", { kind: form.dataset.kind, card: result.setupIntent.payment_method });
      say("Paiement accepté.", false);
      window.location.reload();
    } catch (err) {
      say("Le paiement n'a pas abouti : " + err.message, true);
      submit.disabled = false;
    }
  });
})();
