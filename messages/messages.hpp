// Everything a Chorus actor needs to talk: verbs, nouns, errors, type IDs.
#pragma once

#include "messages/atoms.hpp"
#include "messages/buffer.hpp"
#include "messages/errors.hpp"
#include "messages/payloads.hpp"
#include "messages/type_ids.hpp"
