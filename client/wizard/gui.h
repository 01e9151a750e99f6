// The interactive wizard (wxWidgets): a thin shell of pages over client/wizard.h. Started by
// idlegrid-wizard without --script, or with --gui --script FILE to replay a script through
// the pages (the same handlers the buttons and the mouse call) and save screenshots.
#ifndef IDLEGRID_CLIENT_WIZARD_GUI_H_
#define IDLEGRID_CLIENT_WIZARD_GUI_H_

#include <string>

#include "idlegrid/client/wizard.h"

namespace idlegrid::client {

struct GuiOptions {
  WizardOptions wizard;
  std::string script;  // replay this through the pages, then quit (exit code 0 when all passed)
  std::string shots;   // where {"shot": NAME} writes NAME.png and NAME.bmp
  std::string open;    // a volume to open at start
};

int RunGui(const char* argv0, const GuiOptions& options);

}  // namespace idlegrid::client

#endif  // IDLEGRID_CLIENT_WIZARD_GUI_H_
