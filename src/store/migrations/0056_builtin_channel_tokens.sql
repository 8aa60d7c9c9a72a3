-- A webhook token belongs to connector channels only (`/hooks/{token}` hands its calls to the
-- connector plugin of the channel's kind). Built-in channels (Studio API, a bot's OCS engine
-- channel, the admin "try it" channel) were given one too, so code that asked "does this
-- channel have a connector?" by its token got the wrong answer for them.
UPDATE channels SET token = NULL WHERE kind IN ('api', 'ocs', 'admin');
