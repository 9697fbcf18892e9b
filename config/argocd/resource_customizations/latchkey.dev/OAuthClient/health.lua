-- Argo CD health of a Latchkey OAuthClient (config/argocd; the argocd-cm snippet is in
-- the README). A state its owner declared in Git (Revoked, Expired) is Healthy, with a message
-- saying so, so that a sync that declares it completes; a conflict is Degraded.
local hs = {}
local function condition(t)
  if obj.status ~= nil and obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == t then
        return c
      end
    end
  end
  return nil
end
if obj.metadata.generation ~= nil and (obj.status == nil or obj.status.observedGeneration == nil or obj.status.observedGeneration < obj.metadata.generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the Latchkey manager to reconcile the latest spec"
  return hs
end
local ready = condition("Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Latchkey manager"
  return hs
end
local scopes = condition("ScopesKnown")
if scopes ~= nil and scopes.status == "False" then
  hs.status = "Degraded"
  hs.message = scopes.message
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end
if ready.reason == "Revoked" or ready.reason == "Expired" then
  hs.status = "Healthy"
  hs.message = ready.reason .. " as declared. " .. (ready.message or "")
  return hs
end
hs.status = "Degraded"
hs.message = (ready.reason or "") .. ": " .. (ready.message or "")
return hs
